//! One test per definition under `tests/fixtures`: its diagnostics, one per line,
//! must equal `<file>.expected` (valid definitions have none and no such file).

use std::path::Path;

fn check(path: &Path) -> datatest_stable::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let parsed = shoal_asl::parse(&text);
    let got: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    let expected_file = path.with_extension(format!(
        "{}.expected",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let expected: Vec<String> = match std::fs::read_to_string(&expected_file) {
        Ok(t) => t.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    };
    if std::env::var_os("SHOAL_BLESS").is_some() && !got.is_empty() {
        std::fs::write(&expected_file, got.join("\n") + "\n")?;
        return Ok(());
    }
    let is_invalid = path.components().any(|c| c.as_os_str() == "invalid");
    assert_eq!(
        is_invalid,
        !got.is_empty(),
        "{}: validity does not match its folder",
        path.display()
    );
    assert_eq!(got, expected, "{}", path.display());
    assert_eq!(parsed.is_valid(), got.is_empty());
    Ok(())
}

datatest_stable::harness! {
    { test = check, root = "tests/fixtures", pattern = r"\.(json|yaml)$" },
}
