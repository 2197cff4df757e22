//! One test per case file under `tests/cases`: run it, compare with `expected`.

#[allow(dead_code)]
mod support;

use serde_json::Value;
use shoal_engine::Outcome;
use std::path::Path;

fn check(path: &Path) -> datatest_stable::Result<()> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let definition = serde_json::to_string(&case["definition"])?;
    let run = support::run(&definition, case["input"].clone());
    let expected = &case["expected"];
    match run.outcome {
        Outcome::Succeeded(out) => {
            assert_eq!(
                expected["status"],
                "SUCCEEDED",
                "{}: succeeded with {out}",
                path.display()
            );
            assert_eq!(&out, &expected["output"], "{}", path.display());
        }
        Outcome::Failed(f) => {
            assert_eq!(
                expected["status"],
                "FAILED",
                "{}: failed with {f:?}",
                path.display()
            );
            assert_eq!(
                f.error,
                expected["error"].as_str().unwrap_or_default(),
                "{}: {f:?}",
                path.display()
            );
            if let Some(cause) = expected.get("cause") {
                assert_eq!(f.cause.as_deref(), cause.as_str(), "{}", path.display());
            }
        }
    }
    Ok(())
}

datatest_stable::harness! {
    { test = check, root = "tests/cases", pattern = r"\.json$" },
}
