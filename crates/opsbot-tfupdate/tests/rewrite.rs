//! Rewrites on real-world-shaped files: only the version literals change, byte for byte.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use opsbot_tfupdate::constraint::{Style, TfVersion};
use opsbot_tfupdate::rewrite::{FileRewrite, ProviderSpec, Target, quote, rewrite_file};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/realistic")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn v(s: &str) -> TfVersion {
    TfVersion::parse(s).unwrap()
}

fn run(name: &str, target: &Target, version: &str) -> (String, FileRewrite) {
    let text = fixture(name);
    let out = rewrite_file(Path::new(name), &text, target, &v(version)).unwrap();
    assert_only_literals_changed(&text, &out);
    // running again on the output changes nothing
    let again = rewrite_file(Path::new(name), &out.text, target, &v(version)).unwrap();
    assert_eq!(again.text, out.text, "second run changed {name}");
    assert!(again.rewrites.is_empty(), "{:?}", again.rewrites);
    (text, out)
}

/// Every line is identical except the reported ones, and those differ only by the
/// literal: `before.replace("from", "to") == after`.
fn assert_only_literals_changed(before: &str, out: &FileRewrite) {
    let a: Vec<&str> = before.split('\n').collect();
    let b: Vec<&str> = out.text.split('\n').collect();
    assert_eq!(a.len(), b.len(), "line count changed");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let line = i + 1;
        let on_line: Vec<_> = out.rewrites.iter().filter(|r| r.line == line).collect();
        if on_line.is_empty() {
            assert_eq!(x, y, "line {line} changed without a rewrite");
        } else {
            let mut expected = x.to_string();
            for r in on_line {
                expected = expected.replacen(&quote(&r.from), &quote(&r.to), 1);
            }
            assert_eq!(&expected, y, "line {line}");
        }
    }
}

fn line(text: &str, n: usize) -> &str {
    text.split('\n').nth(n - 1).unwrap()
}

#[test]
fn terraform_required_version_in_every_terraform_block() {
    let (before, out) = run("main.tf", &Target::Terraform, "1.9.8");
    let summary: Vec<(usize, &str, &str, Style)> = out
        .rewrites
        .iter()
        .map(|r| (r.line, r.from.as_str(), r.to.as_str(), r.style))
        .collect();
    assert_eq!(
        summary,
        [
            (8, "~> 1.5", "~> 1.9", Style::Pessimistic),
            (39, ">= 1.3, < 1.6", "1.9.8", Style::Replaced),
        ]
    );
    // comments and heredocs that look like pins are untouched
    assert_eq!(line(&before, 3), line(&out.text, 3));
    assert!(
        out.text
            .contains("    # terraform { required_version = \"1.0.0\" }\n")
    );
}

#[test]
fn provider_by_short_name_updates_object_block_and_provider_block() {
    let target = Target::Provider(ProviderSpec::parse("aws").unwrap());
    let (_, out) = run("main.tf", &target, "5.70.0");
    let got: Vec<(usize, &str, &str)> = out
        .rewrites
        .iter()
        .map(|r| (r.line, r.from.as_str(), r.to.as_str()))
        .collect();
    // `acme = { source = "acme/aws" }` has local name acme: not matched by `aws`
    assert_eq!(
        got,
        [(14, "5.31.0", "5.70.0"), (44, "= 5.31.0", "= 5.70.0")]
    );
    assert!(
        out.text
            .contains("configuration_aliases = [aws.us_east_1, aws.replica]")
    );
    assert!(
        out.text
            .contains("source                = \"hashicorp/aws\" # official")
    );
    // the heredoc and the tag keep the old string
    assert_eq!(out.text.matches("\"5.31.0\"").count(), 2);
}

#[test]
fn provider_by_namespace_matches_source_addresses() {
    let target = Target::Provider(ProviderSpec::parse("acme/aws").unwrap());
    let (_, out) = run("main.tf", &target, "2.0.0");
    assert!(out.rewrites.is_empty(), "{:?}", out.rewrites);
    assert!(
        out.notes
            .iter()
            .any(|n| n.message.contains("already admits"))
    );

    let target = Target::Provider(ProviderSpec::parse("hashicorp/random").unwrap());
    let (_, out) = run("main.tf", &target, "3.6.3");
    assert_eq!(out.rewrites.len(), 1);
    assert_eq!(
        (out.rewrites[0].from.as_str(), out.rewrites[0].to.as_str()),
        ("~> 3.5.0", "~> 3.6.3")
    );
}

#[test]
fn legacy_string_form() {
    let target = Target::Provider(ProviderSpec::parse("hashicorp/google").unwrap());
    let (_, out) = run("main.tf", &target, "6.8.0");
    assert_eq!(out.rewrites.len(), 1);
    assert_eq!(out.rewrites[0].line, 18);
    assert!(
        out.text
            .contains("    google = \"~> 6.8\" # legacy string form\n")
    );
}

#[test]
fn modules_from_registry_git_and_local_sources() {
    let target = Target::Module {
        source: "terraform-aws-modules/vpc/aws".into(),
        git_ref: false,
        regex: None,
    };
    let (_, out) = run("main.tf", &target, "5.13.0");
    assert_eq!(out.rewrites.len(), 1);
    assert_eq!(out.rewrites[0].line, 67);
    assert!(
        out.notes
            .iter()
            .any(|n| n.what == "module \"computed_version\" version"
                && n.message.contains("not a plain string literal"))
    );

    // a registry module with a //subdir and the default host spelled out
    let target = Target::Module {
        source: "terraform-aws-modules/iam/aws".into(),
        git_ref: false,
        regex: None,
    };
    let (_, out) = run("main.tf", &target, "5.44.0");
    assert_eq!(out.rewrites[0].to, "~> 5.44");

    // git sources: left alone without --git-ref, tag bumped with it; branches never
    let git = "github.com/acme/tf-modules";
    let target = Target::Module {
        source: git.into(),
        git_ref: false,
        regex: None,
    };
    let (_, out) = run("main.tf", &target, "1.4.0");
    assert!(out.rewrites.is_empty());
    assert!(out.notes.iter().any(|n| n.message.contains("--git-ref")));
    let target = Target::Module {
        source: git.into(),
        git_ref: true,
        regex: None,
    };
    let (_, out) = run("main.tf", &target, "1.4.0");
    assert_eq!(out.rewrites.len(), 1);
    assert!(
        out.text.contains(
            "source = \"git::https://github.com/acme/tf-modules.git//network?ref=v1.4.0\""
        )
    );
    assert!(out.text.contains("//dns?ref=main\""));
    assert!(
        out.notes
            .iter()
            .any(|n| n.message.contains("not a version tag"))
    );
}

#[test]
fn crlf_line_endings_survive() {
    let (_, out) = run("crlf.tf", &Target::Terraform, "1.9.8");
    assert_eq!(out.rewrites.len(), 1);
    assert!(
        out.text
            .starts_with("terraform {\r\n  required_version = \"1.9.8\"\r\n")
    );
    let target = Target::Provider(ProviderSpec::parse("aws").unwrap());
    let (_, out) = run("crlf.tf", &target, "5.70.0");
    assert!(out.text.contains("      version = \"~> 5.70\"\r\n"));
}

#[test]
fn broken_file_is_an_error_naming_the_line() {
    let err = rewrite_file(
        Path::new("broken.tf"),
        &fixture("broken.tf"),
        &Target::Terraform,
        &v("1.9.8"),
    )
    .unwrap_err();
    assert_eq!(err.line, 11);
    assert!(err.to_string().starts_with("broken.tf:11:"), "{err}");
}

#[test]
fn nothing_to_do_returns_the_same_text() {
    let target = Target::Provider(ProviderSpec::parse("hashicorp/azurerm").unwrap());
    let (before, out) = run("main.tf", &target, "4.0.0");
    assert_eq!(before, out.text);
    assert!(!out.changed());
}
