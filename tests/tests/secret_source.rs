//! opsbot-core's `secret_source` against moto's server (Secrets Manager and SSM over real
//! HTTP on 127.0.0.1): the GitHub token from a secret, a JSON field of a secret, the App key
//! from an SSM SecureString, the process-wide cache, and errors that name the variable and
//! the call but never the value. Skips with a message when `moto_server` is absent.
#![allow(clippy::unwrap_used)]

use opsbot_core::github::Credentials;
use opsbot_core::secret_source::{SecretError, SecretRef, SecretSource, github_settings_with};
use opsbot_tests::moto::Moto;
use secrecy::ExposeSecret;

const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAtest\n-----END PRIVATE KEY-----\n";

fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn token_and_app_key_come_from_secrets_manager_and_ssm() {
    let Some(moto) = Moto::start("token_and_app_key_come_from_secrets_manager_and_ssm") else {
        return;
    };
    let config = moto.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let ssm = aws_sdk_ssm::Client::new(&config);
    let token = sm
        .create_secret()
        .name("opsbot/github-token")
        .secret_string("ghp_fromsecretsmanager000000000000000000\n")
        .send()
        .await
        .unwrap();
    let token_arn = token.arn().unwrap().to_string();
    let json = sm
        .create_secret()
        .name("opsbot/github-json")
        .secret_string(r#"{"token": "ghp_fromjsonfield", "other": 1}"#)
        .send()
        .await
        .unwrap();
    let json_arn = json.arn().unwrap().to_string();
    ssm.put_parameter()
        .name("/opsbot/github-app-key")
        .value(PEM)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();

    let source = SecretSource::new(&config);

    // A token from Secrets Manager (trailing newline trimmed).
    let settings = github_settings_with(
        &source,
        env(vec![
            ("GITHUB_TOKEN_SECRET_ARN", token_arn.clone()),
            ("GITHUB_REPOSITORY", "acme/ops".into()),
        ]),
    )
    .await
    .unwrap();
    let Credentials::Token(t) = &settings.credentials else {
        panic!("{:?}", settings.credentials)
    };
    assert_eq!(
        t.expose_secret(),
        "ghp_fromsecretsmanager000000000000000000"
    );
    assert_eq!(settings.repository.unwrap().to_string(), "acme/ops");

    // One field of a JSON secret.
    let settings = github_settings_with(
        &source,
        env(vec![(
            "GITHUB_TOKEN_SECRET_ARN",
            format!("{json_arn}#token"),
        )]),
    )
    .await
    .unwrap();
    let Credentials::Token(t) = &settings.credentials else {
        panic!()
    };
    assert_eq!(t.expose_secret(), "ghp_fromjsonfield");

    // The App key from an SSM SecureString, decrypted.
    let settings = github_settings_with(
        &source,
        env(vec![
            ("GITHUB_APP_ID", "12345".into()),
            (
                "GITHUB_APP_PRIVATE_KEY_SSM_PARAMETER",
                "/opsbot/github-app-key".into(),
            ),
        ]),
    )
    .await
    .unwrap();
    let Credentials::App {
        app_id,
        private_key_pem,
        ..
    } = &settings.credentials
    else {
        panic!()
    };
    assert_eq!(*app_id, 12345);
    assert!(
        private_key_pem
            .expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    // Debug output never shows the key.
    assert!(!format!("{settings:?}").contains("MIIBVQ"));

    // Cached once per process: with the secret gone from AWS, the same reference still
    // resolves (no second GetSecretValue), while a new reference goes to AWS and fails.
    sm.delete_secret()
        .secret_id(&token_arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let again = source
        .fetch(
            "GITHUB_TOKEN",
            &SecretRef::SecretsManager {
                id: token_arn.clone(),
                json_key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        again.expose_secret(),
        "ghp_fromsecretsmanager000000000000000000"
    );
}

#[tokio::test]
async fn errors_name_the_variable_and_call_never_the_value() {
    let Some(moto) = Moto::start("errors_name_the_variable_and_call_never_the_value") else {
        return;
    };
    let config = moto.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    sm.create_secret()
        .name("opsbot/not-json")
        .secret_string("ghp_plainsecretvalue")
        .send()
        .await
        .unwrap();
    let source = SecretSource::new(&config);

    let err = github_settings_with(
        &source,
        env(vec![("GITHUB_TOKEN_SECRET_ARN", "opsbot/missing".into())]),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecretError::Fetch { .. }), "{err:?}");
    assert!(
        text.starts_with("GITHUB_TOKEN: Secrets Manager GetSecretValue secret opsbot/missing: "),
        "{text}"
    );
    assert!(text.contains("ResourceNotFound"), "{text}");

    let err = github_settings_with(
        &source,
        env(vec![(
            "GITHUB_TOKEN_SECRET_ARN",
            "opsbot/not-json#token".into(),
        )]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a JSON object"), "{err}");
    assert!(!err.contains("ghp_plainsecretvalue"), "{err}");

    let err = github_settings_with(
        &source,
        env(vec![(
            "GITHUB_APP_PRIVATE_KEY_SSM_PARAMETER",
            "/nope".into(),
        )]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("GITHUB_APP_PRIVATE_KEY: SSM GetParameter SSM parameter /nope: "),
        "{err}"
    );
    assert!(err.contains("ParameterNotFound"), "{err}");
}
