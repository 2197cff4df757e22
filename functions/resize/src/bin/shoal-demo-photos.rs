//! Makes the demo's photos: `shoal-demo-photos SOURCES OUT N` writes N JPEGs (q85,
//! about 500×375, like the seed's dog photos) cut from the real photos in SOURCES
//! (random crops, scales and mirror images, reproducible), named `photo_00000.jpg`...

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, out, n] = args.as_slice() else {
        return Err("usage: shoal-demo-photos SOURCES OUT N".into());
    };
    let n: usize = n.parse().map_err(|_| "N must be a number")?;
    let mut sources = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| format!("{src}: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let img = image::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        sources.push(img.to_rgb8());
    }
    if sources.is_empty() {
        return Err(format!("no photos in {src}"));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{out}: {e}"))?;
    let mut seed: u64 = 0x5EED;
    let mut rand = move || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in 0..n {
        let s = &sources[i % sources.len()];
        let (w, h) = s.dimensions();
        // A crop of 55-100 % of the source, anywhere in it.
        let pct = 55 + rand() % 46;
        let (cw, ch) = ((w * pct as u32 / 100).max(8), (h * pct as u32 / 100).max(8));
        let (x, y) = (
            (rand() % u64::from(w - cw + 1)) as u32,
            (rand() % u64::from(h - ch + 1)) as u32,
        );
        let mirror = rand() % 2 == 1;
        let mut crop = Vec::with_capacity((cw * ch * 3) as usize);
        for yy in y..y + ch {
            for xx in 0..cw {
                let sx = if mirror { x + cw - 1 - xx } else { x + xx };
                crop.extend_from_slice(&s.get_pixel(sx, yy).0);
            }
        }
        // Dog-photo sizes: 500 wide, or 375 tall, with the crop's proportions.
        let scale = (500.0 / cw as f64).min(375.0 / ch as f64);
        let (tw, th) = (
            ((cw as f64 * scale) as u32).max(1),
            ((ch as f64 * scale) as u32).max(1),
        );
        let small = shoal_resize::resize_rgb(&crop, cw, ch, tw, th)?;
        let mut jpg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpg, 85)
            .encode(&small, tw as u16, th as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| e.to_string())?;
        let path = format!("{out}/photo_{i:05}.jpg");
        std::fs::write(&path, jpg).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}
