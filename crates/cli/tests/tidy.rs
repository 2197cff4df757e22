//! Repository rules that no compiler checks.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/cli sits two folders below the root")
}

/// ARCHITECTURE.md's code map names every crate under `crates/`, by path and by
/// package name, so a new crate cannot land without its place in the map.
#[test]
fn every_crate_is_in_the_code_map() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let map = arch
        .split("## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a '## Code map' section");
    let map = map.split("\n## ").next().unwrap_or(map);
    let mut missing = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        crates += 1;
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .expect("every crate has a name");
        let path = format!("`crates/{}`", dir.file_name().unwrap().to_string_lossy());
        if !map.contains(&format!("`{name}`")) || !map.contains(&path) {
            missing.push(format!("{name} ({path})"));
        }
    }
    assert!(crates >= 10, "found only {crates} crates");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map lacks: {missing:?}"
    );
}
