//! Shared by the unit tests of this crate: the fixtures in `tests/fixtures/health/`.
#![allow(clippy::unwrap_used)]

use crate::event::{HealthEvent, parse_input_bytes};
use crate::route::Target;

/// The first event of `tests/fixtures/health/{name}.json`; the file must parse cleanly.
pub(crate) fn fixture(name: &str) -> HealthEvent {
    let path = format!(
        "{}/../../tests/fixtures/health/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut parsed = parse_input_bytes(&bytes);
    assert!(parsed.errors.is_empty(), "{path}: {:?}", parsed.errors);
    parsed.events.remove(0)
}

/// The repository the tests file issues in: `acme/ops`, label `aws-health`.
pub(crate) fn target() -> Target {
    Target {
        repo: "acme/ops".into(),
        labels: vec!["aws-health".into()],
        ..Target::default()
    }
}
