//! opsbot-tests: stateful fakes of the services opsbot talks to, each served over real
//! HTTP on 127.0.0.1 (random port), and the end-to-end tests that drive the real clients
//! against them. Nothing here reaches the network beyond loopback.

pub mod fake_github;
pub mod fake_health;
pub mod fake_registry;
pub mod fake_sns;
pub mod lambda_runtime;
pub mod moto;
pub mod serve;
