//! opsbot-app (stub)
