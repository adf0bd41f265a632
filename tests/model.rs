//! The apimodel: lossless round trips, atomic save, validation errors, secrets.

use std::fs;
use std::path::{Path, PathBuf};

use aksup::model::{ApiModel, Error, ValidationError};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// Key order of every object, depth first, with the paths: a document equality
/// that also sees order.
fn key_order(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = format!("{path}/{key}");
                out.push(child_path.clone());
                key_order(child, &child_path, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                key_order(child, &format!("{path}/{index}"), out);
            }
        }
        _ => {}
    }
}

fn assert_same_document(original: &str, saved: &str, name: &str) {
    let a: Value = serde_json::from_str(original).unwrap();
    let b: Value = serde_json::from_str(saved).unwrap();
    assert_eq!(a, b, "{name}: values differ after a round trip");
    let (mut ka, mut kb) = (Vec::new(), Vec::new());
    key_order(&a, "", &mut ka);
    key_order(&b, "", &mut kb);
    assert_eq!(ka, kb, "{name}: key order differs after a round trip");
    // Numbers keep their text (arbitrary precision), e.g. 1.5 stays 1.5.
    assert_eq!(a.to_string(), b.to_string(), "{name}: compact text differs");
}

#[test]
fn realworld_apimodels_round_trip_to_the_same_document() {
    let dir = repo("../shared/realworld/apimodels");
    if !dir.exists() {
        eprintln!(
            "SKIPPED: {} is absent (the shared folder sits beside the repository in CI)",
            dir.display()
        );
        return;
    }
    let files = json_files(&dir);
    assert!(
        files.len() >= 4,
        "expected the four realworld apimodels, found {}",
        files.len()
    );
    for file in files {
        let original = fs::read_to_string(&file).unwrap();
        let model =
            ApiModel::parse(&original).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        assert_same_document(
            &original,
            &model.to_json_string(),
            &file.display().to_string(),
        );
    }
}

#[test]
fn testdata_apimodels_round_trip_byte_for_byte() {
    let files = json_files(&repo("testdata/apimodels"));
    assert!(files.len() >= 6);
    for file in files {
        let original = fs::read_to_string(&file).unwrap();
        let model = ApiModel::parse(&original).unwrap();
        model
            .validate()
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        assert_eq!(
            model.to_json_string(),
            original,
            "{} is not byte-identical",
            file.display()
        );
    }
}

#[test]
fn save_is_atomic_private_and_keeps_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apimodel.json");
    let original = fs::read_to_string(repo("testdata/apimodels/single-master-aad.json")).unwrap();
    fs::write(&path, &original).unwrap();

    let mut model = ApiModel::load(&path).unwrap();
    model
        .set(
            "/properties/orchestratorProfile/orchestratorVersion",
            Value::from("1.34.4"),
        )
        .unwrap();
    model
        .set(
            "/properties/orchestratorProfile/orchestratorRelease",
            Value::from("1.34"),
        )
        .unwrap();
    model.save(&path).unwrap();

    let saved = fs::read_to_string(&path).unwrap();
    assert_eq!(
        saved,
        original
            .replace("\"1.33.10\"", "\"1.34.4\"")
            .replace("\"1.33\"", "\"1.34\"")
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("apimodel.json.bak")).unwrap(),
        original
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["apimodel.json", "apimodel.json.bak"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name} mode");
        }
    }
    // No temporary files left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_failed_save_leaves_the_original_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apimodel.json");
    let original = fs::read_to_string(repo("testdata/apimodels/single-master-aad.json")).unwrap();
    fs::write(&path, &original).unwrap();
    // A directory where the backup must go makes the save fail after the temp file was written.
    fs::create_dir(dir.path().join("apimodel.json.bak")).unwrap();

    let mut model = ApiModel::load(&path).unwrap();
    model
        .set(
            "/properties/orchestratorProfile/orchestratorVersion",
            Value::from("1.34.4"),
        )
        .unwrap();
    let err = model.save(&path).unwrap_err();
    assert!(matches!(err, Error::Save { .. }), "{err:?}");
    assert!(
        err.to_string().contains("the original file is unchanged"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
    let leftovers: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn a_save_into_a_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = ApiModel::load(&repo("testdata/apimodels/single-master-aad.json")).unwrap();
    let err = model
        .save(&dir.path().join("missing/apimodel.json"))
        .unwrap_err();
    assert!(matches!(err, Error::Save { .. }));
}

#[test]
fn every_documented_load_error_is_reported_clearly() {
    type Case = (&'static str, fn(&ValidationError) -> bool, &'static str);
    let cases: [Case; 9] = [
        (
            "api-version",
            |e| matches!(e, ValidationError::ApiVersion(_)),
            "vlabs",
        ),
        (
            "no-orchestrator-version",
            |e| matches!(e, ValidationError::NoOrchestratorVersion),
            "cluster definition",
        ),
        (
            "no-master-profile",
            |e| matches!(e, ValidationError::NoMasterProfile),
            "masterProfile",
        ),
        (
            "master-count",
            |e| matches!(e, ValidationError::MasterCount(_)),
            "1, 3 or 5",
        ),
        (
            "pool-count",
            |e| matches!(e, ValidationError::PoolCount { .. }),
            "between 0 and 1000",
        ),
        (
            "duplicate-pool",
            |e| matches!(e, ValidationError::DuplicatePool(_)),
            "more than once",
        ),
        (
            "vmss-control-plane",
            |e| matches!(e, ValidationError::VmssControlPlane),
            "VMSS control plane",
        ),
        (
            "identity-system",
            |e| matches!(e, ValidationError::IdentitySystem(_)),
            "azure_ad",
        ),
        (
            "authentication-method",
            |e| matches!(e, ValidationError::AuthenticationMethod(_)),
            "client_certificate",
        ),
    ];
    for (name, matches, words) in cases {
        let model = ApiModel::load(&repo(&format!("testdata/invalid/{name}.json"))).unwrap();
        let err = model.validate().unwrap_err();
        assert!(matches(&err), "{name}: {err:?}");
        assert!(err.to_string().contains(words), "{name}: {err}");
    }
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let err = ApiModel::load(&repo("testdata/invalid/syntax.json")).unwrap_err();
    match &err {
        Error::Syntax { line, column, .. } => {
            assert_eq!((*line, *column), (6, 5));
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 6, column 5"), "{err}");
}

#[test]
fn wrong_types_and_missing_files_are_errors_not_panics() {
    let err = ApiModel::parse(
        r#"{"apiVersion":"vlabs","properties":{"agentPoolProfiles":{"name":"x"}}}"#,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    assert!(matches!(
        ApiModel::parse("[1,2]").unwrap_err(),
        Error::NotAnObject
    ));
    assert!(matches!(
        ApiModel::load(Path::new("/nonexistent/apimodel.json")).unwrap_err(),
        Error::Read { .. }
    ));
}

#[test]
fn debug_and_errors_never_show_secrets() {
    let model = ApiModel::load(&repo("testdata/apimodels/windows-pool.json")).unwrap();
    let debug = format!("{model:?}");
    for secret in [
        "FAKE-sp-secret-value",
        "SECRET",
        "FAKE-windows-Password",
        "PRIVATE KEY",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
    }
    assert!(debug.contains("redacted"));
    // A validation error about the profile holding secrets does not echo them.
    let mut broken = model.clone();
    broken
        .set(
            "/properties/customCloudProfile/identitySystem",
            Value::from("kerberos"),
        )
        .unwrap();
    let err = broken.validate().unwrap_err();
    assert!(!format!("{err} {err:?}").contains("FAKE-"), "{err}");
    // A shape error names the field, not the document.
    let err = ApiModel::parse(r#"{"apiVersion":"vlabs","properties":{"servicePrincipalProfile":{"clientId":"x","secret":42}}}"#)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("properties.servicePrincipalProfile.secret"),
        "{text}"
    );
    assert!(!text.contains("42"), "{text}");
    let err = ApiModel::parse(
        r#"{"apiVersion":"vlabs","properties":{"masterProfile":{"dnsPrefix":{"x":"FAKE-value"}}}}"#,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("FAKE-value"), "{err}");
    let err = ApiModel::parse(
        r#"{"apiVersion":"vlabs","properties":{"masterProfile":{"osDiskSizeGB":"FAKE-secret"}}}"#,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("FAKE-secret"), "{err}");
}

#[test]
fn set_keeps_position_and_appends_new_keys() {
    let mut model =
        ApiModel::parse(r#"{"apiVersion":"vlabs","b":1,"properties":{"x":1,"y":2}}"#).unwrap();
    model.set("/properties/x", Value::from(5)).unwrap();
    model.set("/properties/z", Value::from(3)).unwrap();
    assert_eq!(
        model.to_json_string(),
        "{\n  \"apiVersion\": \"vlabs\",\n  \"b\": 1,\n  \"properties\": {\n    \"x\": 5,\n    \"y\": 2,\n    \"z\": 3\n  }\n}\n"
    );
}

#[test]
fn go_escapes_are_reproduced() {
    let model = ApiModel::parse("{\"a\":\"<&>\\u2028\"}").unwrap();
    assert_eq!(model.to_json_string(), "{\n  \"a\": \"<&>\\u2028\"\n}\n");
}
