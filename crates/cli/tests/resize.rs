//! The seed demo end to end: the seed's own definition over a few hundred photos with
//! the resize function as a Lambda process (`functions/resize`, built by
//! `scripts/test.sh`), its S3 calls served from the local buckets by shoal.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A photo-like test image: smooth colour fields with a pattern that differs per index.
fn photo(i: u32, w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let r = ((x * 255) / w + i * 37) % 256;
            let g = ((y * 255) / h + i * 11) % 256;
            let b = (((x / 40 + y / 40 + i) % 2) * 160 + 40) % 256;
            px.extend([r as u8, g as u8, b as u8]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// An independent reference: the area average of each 128×128 cell of the source.
fn reference(src: &image::RgbImage) -> Vec<f64> {
    let (w, h) = src.dimensions();
    let mut out = vec![0.0; 128 * 128 * 3];
    let mut count = vec![0.0; 128 * 128];
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = ((x * 128 / w) as usize, (y * 128 / h) as usize);
            let p = src.get_pixel(x, y).0;
            for c in 0..3 {
                out[(cy * 128 + cx) * 3 + c] += f64::from(p[c]);
            }
            count[cy * 128 + cx] += 1.0;
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        *v /= count[i / 3];
    }
    out
}

#[test]
fn seed_definition_resizes_every_photo_and_reports_a_corrupt_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let function = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("shoal-resize");
    assert!(
        function.exists(),
        "{} is missing: cargo build --release -p shoal-resize (scripts/test.sh does)",
        function.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("buckets/photos/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(dir.path().join("buckets/thumbnails")).unwrap();
    let n = 300;
    for i in 0..n {
        let (w, h) = if i % 3 == 0 {
            (500, 375)
        } else {
            (375 + i % 50, 500)
        };
        std::fs::write(images.join(format!("p{i:04}.jpg")), photo(i, w, h)).unwrap();
    }
    std::fs::write(
        images.join("p0150-corrupt.jpg"),
        b"\xFF\xD8 this is not a photo",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("shoal.toml"),
        format!(
            "[functions.resize]\ncommand = [{:?}]\ntimeout_seconds = 30\nconcurrency = 2\n\
             [functions.resize-builtin]\nbuiltin = \"resize\"\n",
            function.display().to_string()
        ),
    )
    .unwrap();
    let example = root.join("examples/resize-photos");
    // The Lambda process, then the same code as a builtin, over the same photos.
    for input in ["input.json", "input-builtin.json"] {
        let _ = std::fs::remove_dir_all(dir.path().join("buckets/thumbnails/images"));
        let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("run")
            .arg(example.join("state-machine.asl.json"))
            .arg("--input")
            .arg(format!("@{}", example.join(input).display()))
            .arg("--buckets")
            .arg(dir.path().join("buckets"))
            .arg("--config")
            .arg(dir.path().join("shoal.toml"))
            .arg("--json")
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(r["status"], "SUCCEEDED", "{r}");
        let batches = r["output"].as_array().unwrap();
        assert_eq!(batches.len(), 4, "301 photos in batches of 100");
        let succeeded: u64 = batches
            .iter()
            .map(|b| b["succeeded"].as_u64().unwrap())
            .sum();
        assert_eq!(succeeded, u64::from(n));
        let failed: Vec<&Value> = batches
            .iter()
            .flat_map(|b| b["failed"].as_array().unwrap())
            .collect();
        assert_eq!(failed.len(), 1, "{r}");
        assert_eq!(failed[0]["key"], "images/p0150-corrupt.jpg");
        assert!(failed[0]["error"].as_str().unwrap().contains("JPEG"), "{r}");

        for i in 0..n {
            let key = format!("p{i:04}.jpg");
            let out = std::fs::read(dir.path().join("buckets/thumbnails/images").join(&key))
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let thumb = image::load_from_memory_with_format(&out, image::ImageFormat::Jpeg)
                .unwrap_or_else(|e| panic!("{key} is not a JPEG: {e}"))
                .to_rgb8();
            assert_eq!(thumb.dimensions(), (128, 128), "{key}");
            let src = image::load_from_memory(&std::fs::read(images.join(&key)).unwrap())
                .unwrap()
                .to_rgb8();
            let diff = |want: &[f64]| {
                thumb
                    .as_raw()
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (f64::from(*a) - b).abs())
                    .sum::<f64>()
                    / want.len() as f64
            };
            // Lanczos rings at the pattern's hard edges where an area average does not;
            // a different photo is much further off.
            let own = diff(&reference(&src));
            assert!(
                own < 20.0,
                "{key}: mean difference {own:.1} from the reference"
            );
            let other = format!("p{:04}.jpg", (i + 1) % n);
            let other = image::load_from_memory(&std::fs::read(images.join(&other)).unwrap())
                .unwrap()
                .to_rgb8();
            let theirs = diff(&reference(&image::imageops::resize(
                &other,
                src.width(),
                src.height(),
                image::imageops::FilterType::Triangle,
            )));
            assert!(
                theirs > 2.0 * own,
                "{key}: {own:.1} from itself, {theirs:.1} from another"
            );
        }
    }
}
