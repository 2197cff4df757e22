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

/// No two modules of a crate name each other (`crate::<module>`): such a cycle says a
/// piece sits in the wrong place.
#[test]
fn no_module_cycles_within_a_crate() {
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        let Ok(files) = std::fs::read_dir(&src) else {
            continue;
        };
        let mut deps: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut texts = Vec::new();
        for f in files {
            let p = f.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
                let text = std::fs::read_to_string(&p).unwrap();
                // Unit tests may reach anywhere.
                let text = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                texts.push((name, text));
            }
        }
        let names: Vec<String> = texts.iter().map(|(n, _)| n.clone()).collect();
        for (name, text) in &texts {
            let used = names
                .iter()
                .filter(|m| *m != name && text.contains(&format!("crate::{m}")))
                .cloned()
                .collect();
            deps.insert(name.clone(), used);
        }
        for (a, used) in &deps {
            for b in used {
                if deps.get(b).is_some_and(|u| u.contains(a)) && a < b {
                    cycles.push(format!("{}: {a} <-> {b}", src.display()));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:?}");
}
