//! The resize kernel alone, one thread: `cargo run --release -p shoal-resize --example kernel -- DIR`.
//! Prints photos, seconds and milliseconds per photo (decode + Lanczos3 128×128 + JPEG q75).

// The same allocator as shoal: glibc's malloc was 5 % of this function's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = std::env::args().nth(1).expect("a folder of photos");
    let mut photos = Vec::new();
    for e in std::fs::read_dir(&dir).expect("readable folder").flatten() {
        photos.push(std::fs::read(e.path()).expect("readable photo"));
    }
    let start = std::time::Instant::now();
    let mut failed = 0;
    for p in &photos {
        if shoal_resize::thumbnail(p, false).is_err() {
            failed += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{{\"photos\": {}, \"failed\": {failed}, \"seconds\": {s:.3}, \"ms_per_photo\": {:.3}}}",
        photos.len(),
        s * 1000.0 / photos.len() as f64
    );
}
