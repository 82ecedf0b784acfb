//! moto's server: the AWS implementation nobody here wrote, for SNS, SQS, DynamoDB, Secrets
//! Manager, SSM and STS. [`Moto::start`] runs `moto_server -H 127.0.0.1 -p PORT` on a free
//! loopback port and stops it when dropped. Build AWS SDK clients from [`Moto::sdk_config`]
//! (or point them at [`Moto::endpoint`]).
//!
//! When `moto_server` is not on `PATH` (`pip install 'moto[server]'`), [`Moto::start`]
//! returns `None` after printing why, so a developer without it sees the test skip; under
//! CI (`CI=true`) a missing moto is a failure, because `.ci/run` installs it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server on 127.0.0.1; dropping it kills the process.
#[derive(Debug)]
pub struct Moto {
    addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts moto's server, or returns `None` (with a message on stderr) when it is not
    /// installed and this is not CI. Panics when it is installed but does not come up.
    pub fn start(test: &str) -> Option<Moto> {
        let program = std::env::var("OPSBOT_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let spawned = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) => {
                let msg = format!(
                    "{test}: skipped: cannot run {program} ({err}); install it with \
                     `pip install 'moto[server]'`"
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg} (CI requires it: .ci/run installs moto)");
                }
                eprintln!("{msg}");
                return None;
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut moto = Moto { addr, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("{test}: {program} exited before listening on {addr}: {status}");
            }
            if Instant::now() > deadline {
                panic!("{test}: {program} did not listen on {addr} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` / `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An AWS SDK configuration for this moto: its endpoint, `us-east-1`, test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .test_credentials()
            .load()
            .await
    }

    /// The socket address moto listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Environment for a child process (a Lambda bootstrap, the CLI) that should use this
    /// moto with dummy credentials in `us-east-1`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}
