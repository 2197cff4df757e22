//! One test per definition of the validator-suite corpus (`corpus/validator-cases`):
//! a file under `valid/` parses with no diagnostic, a file under `invalid/` gives at
//! least one, each with a JSON pointer into the definition. Files under `disputed/`
//! are parsed (no panic, under a second) and not scored.
//!
//! Two lists, each a `## \`label/file\`` heading per case with the reason under it,
//! turn a case's expected verdict around:
//! - `DISAGREEMENTS.md`: shoal and the suite disagree, and there is evidence that AWS
//!   sides with shoal.
//! - `KNOWN-GAPS.md`: shoal is wrong (or AWS's verdict is unknown) and the fix is
//!   elsewhere. The test holds shoal's present verdict, so it fails the day the gap
//!   closes, to have the entry removed.

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const ROOT: &str = "../../corpus/validator-cases";

/// The `label/file` of every case listed in one of the lists.
fn listed(list: &'static str) -> HashSet<String> {
    let md = std::fs::read_to_string(Path::new(ROOT).join(list))
        .unwrap_or_else(|e| panic!("{list}: {e}"));
    md.lines()
        .filter_map(|l| l.strip_prefix("## `")?.split('`').next())
        .map(str::to_string)
        .collect()
}

fn disagreements() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| listed("DISAGREEMENTS.md"))
}

fn known_gaps() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| listed("KNOWN-GAPS.md"))
}

/// Does this pointer name a place in the document? A diagnostic about a missing
/// field names the object that lacks it, so every pointer must resolve.
fn resolves(doc: &Value, pointer: &str) -> bool {
    pointer.is_empty() || doc.pointer(pointer).is_some()
}

fn check(path: &Path) -> datatest_stable::Result<()> {
    let rel = path.strip_prefix(ROOT).unwrap_or(path);
    let rel = rel.to_string_lossy().replace('\\', "/");
    let label = rel.split('/').next().unwrap_or_default();
    let text = std::fs::read_to_string(path)?;

    let started = Instant::now();
    let parsed = shoal_asl::parse(&text);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{rel}: parsing took {took:?}"
    );
    if label == "disputed" {
        return Ok(());
    }

    let (disagree, gap) = (disagreements().contains(&rel), known_gaps().contains(&rel));
    assert!(!(disagree && gap), "{rel} is in both lists");
    let why = match (disagree, gap) {
        (true, _) => " (its entry in DISAGREEMENTS.md turns the label around)",
        (_, true) => {
            " (KNOWN-GAPS.md holds shoal's present verdict: if the gap is closed, remove the entry)"
        }
        _ => "",
    };
    let want_valid = (label == "valid") != (disagree || gap);
    let diags: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    if want_valid {
        assert!(
            parsed.is_valid(),
            "{rel}: expected no diagnostics{why}, got:\n{}",
            diags.join("\n")
        );
    } else {
        assert!(
            !parsed.diagnostics.is_empty(),
            "{rel}: expected at least one diagnostic{why}"
        );
        if let Ok(doc) = serde_json::from_str::<Value>(&text) {
            for d in &parsed.diagnostics {
                assert!(
                    resolves(&doc, &d.pointer),
                    "{rel}: the pointer of {d} is not in the document"
                );
            }
        }
    }
    Ok(())
}

/// Every entry of a list names a file of the corpus under `valid/` or `invalid/`.
fn list_names_cases(path: &Path) -> datatest_stable::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let list: &'static str = if name == "DISAGREEMENTS.md" {
        "DISAGREEMENTS.md"
    } else {
        "KNOWN-GAPS.md"
    };
    for rel in listed(list) {
        assert!(
            rel.starts_with("valid/") || rel.starts_with("invalid/"),
            "{list}: {rel} is not a scored case"
        );
        assert!(
            Path::new(ROOT).join(&rel).is_file(),
            "{list}: {rel} is not in the corpus"
        );
    }
    Ok(())
}

datatest_stable::harness! {
    { test = check, root = ROOT, pattern = r"^(valid|invalid|disputed)/.*\.json$" },
    { test = list_names_cases, root = ROOT, pattern = r"^(DISAGREEMENTS|KNOWN-GAPS)\.md$" },
}
