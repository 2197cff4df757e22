//! What the seed's Go function did, for one batch of a Distributed Map: for each item,
//! get the photo, decode it, resize it to 128×128 with Lanczos3 (stretching, as the
//! seed did, unless `keep_aspect`), encode it as JPEG q75, and put it in the
//! destination bucket under the same key. Unlike the seed it reports every failure.

use fast_image_resize as fr;
use futures::future::LocalBoxFuture;
use serde_json::{json, Value};
use std::sync::Arc;

pub const SIZE: u32 = 128;
pub const QUALITY: u8 = 75;

/// Decodes to RGB: JPEG through libjpeg-turbo, and there, when the target is at most
/// half the source, with DCT scaling (the decoder skips the detail the resize would
/// throw away); PNG, GIF, BMP, WebP and JPEGs libjpeg-turbo cannot turn into RGB (CMYK)
/// through the `image` crate. `target` maps the source size to the wanted size.
pub fn decode_for(
    src: &[u8],
    target: impl Fn(u32, u32) -> (u32, u32),
) -> Result<(Vec<u8>, u32, u32), String> {
    let mut pixels = Vec::new();
    let (w, h) = decode_into(src, &target, &mut pixels)?;
    Ok((pixels, w, h))
}

/// [`decode_for`] into `pixels`, whose memory is reused: a fresh buffer per photo cost a
/// tenth of the builtin's CPU in page faults.
fn decode_into(
    src: &[u8],
    target: &impl Fn(u32, u32) -> (u32, u32),
    pixels: &mut Vec<u8>,
) -> Result<(u32, u32), String> {
    let mut jpeg_error = None;
    if src.starts_with(&[0xFF, 0xD8]) {
        match decode_turbo(src, target, pixels) {
            Ok(d) => return Ok(d),
            Err(e) => jpeg_error = Some(e),
        }
    }
    // Of a JPEG that neither decoder reads, libjpeg-turbo's complaint is the useful one.
    let img = image::load_from_memory(src)
        .map_err(|e| jpeg_error.unwrap_or_else(|| format!("not a decodable image: {e}")))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    *pixels = rgb.into_raw();
    Ok((w, h))
}

/// The whole image, unscaled.
pub fn decode(src: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
    decode_for(src, |w, h| (w, h))
}

thread_local! {
    static TURBO: std::cell::RefCell<Option<(turbojpeg::Decompressor, turbojpeg::Compressor)>> =
        const { std::cell::RefCell::new(None) };
}

fn with_turbo<T>(
    f: impl FnOnce(&mut turbojpeg::Decompressor, &mut turbojpeg::Compressor) -> Result<T, String>,
) -> Result<T, String> {
    TURBO.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            let mut c = turbojpeg::Compressor::new().map_err(|e| e.to_string())?;
            c.set_quality(QUALITY as i32).map_err(|e| e.to_string())?;
            c.set_subsamp(turbojpeg::Subsamp::Sub2x2)
                .map_err(|e| e.to_string())?;
            *t = Some((
                turbojpeg::Decompressor::new().map_err(|e| e.to_string())?,
                c,
            ));
        }
        let (d, c) = t.as_mut().expect("made above");
        f(d, c)
    })
}

fn decode_turbo(
    src: &[u8],
    target: &impl Fn(u32, u32) -> (u32, u32),
    pixels: &mut Vec<u8>,
) -> Result<(u32, u32), String> {
    with_turbo(|d, _| {
        let header = d
            .read_header(src)
            .map_err(|e| format!("not a valid JPEG: {e}"))?;
        let (tw, th) = target(header.width as u32, header.height as u32);
        // The smallest scaled size that still covers the target on both sides.
        let factor = [
            turbojpeg::ScalingFactor::ONE_EIGHTH,
            turbojpeg::ScalingFactor::ONE_QUARTER,
            turbojpeg::ScalingFactor::ONE_HALF,
        ]
        .into_iter()
        .find(|f| f.scale(header.width) >= tw as usize && f.scale(header.height) >= th as usize)
        .unwrap_or(turbojpeg::ScalingFactor::ONE);
        d.set_scaling_factor(factor).map_err(|e| e.to_string())?;
        let size = header.scaled(factor);
        pixels.resize(size.width * size.height * 3, 0);
        let img = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: size.width,
            pitch: size.width * 3,
            height: size.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        d.decompress(src, img)
            .map_err(|e| format!("not a valid JPEG: {e}"))?;
        Ok((size.width as u32, size.height as u32))
    })
}

/// RGB pixels to a JPEG at [`QUALITY`], 4:2:0, through libjpeg-turbo.
pub fn encode_jpeg(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    with_turbo(|_, c| {
        let img = turbojpeg::Image {
            pixels: rgb,
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        c.compress_to_vec(img).map_err(|e| e.to_string())
    })
}

/// Samples of Lanczos3 on [0, 3] per unit: linear interpolation between them is off by
/// under 1e-7, far below a u8 step.
const LANCZOS_STEPS: usize = 4096;

static LANCZOS_TABLE: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let px = x * std::f64::consts::PI;
            px.sin() / px
        }
    };
    (0..=3 * LANCZOS_STEPS + 1)
        .map(|i| {
            let x = i as f64 / LANCZOS_STEPS as f64;
            if x < 3.0 {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        })
        .collect()
});

fn lanczos3_from_table(x: f64) -> f64 {
    let a = x.abs() * LANCZOS_STEPS as f64;
    let i = a as usize;
    if i >= 3 * LANCZOS_STEPS {
        return 0.0;
    }
    let t = &*LANCZOS_TABLE;
    t[i] + (t[i + 1] - t[i]) * (a - i as f64)
}

/// Lanczos3 as fast_image_resize computes it, but from a table: each photo has its own
/// size, so the coefficients are computed anew for every one, and `sin` was a tenth of
/// the whole job.
fn lanczos3() -> fr::FilterType {
    match fr::Filter::new("Lanczos3 (table)", lanczos3_from_table, 3.0) {
        Ok(f) => fr::FilterType::Custom(f),
        Err(_) => fr::FilterType::Lanczos3,
    }
}

/// Resizes RGB pixels with Lanczos3, reusing one resizer (buffers, coefficients) per thread.
pub fn resize_rgb(pixels: &[u8], w: u32, h: u32, tw: u32, th: u32) -> Result<Vec<u8>, String> {
    let src_img =
        fr::images::ImageRef::new(w, h, pixels, fr::PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    thread_local! {
        static RESIZER: std::cell::RefCell<fr::Resizer> = std::cell::RefCell::new(fr::Resizer::new());
    }
    RESIZER
        .with(|r| {
            r.borrow_mut().resize(
                &src_img,
                &mut dst,
                &fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(lanczos3())),
            )
        })
        .map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
}

/// One photo to a `SIZE`×`SIZE` (or aspect-kept, fitting) JPEG at quality 75.
pub fn thumbnail(src: &[u8], keep_aspect: bool) -> Result<Vec<u8>, String> {
    let target = |w: u32, h: u32| {
        if keep_aspect && w > 0 && h > 0 {
            let s = SIZE as f64 / w.max(h) as f64;
            (
                ((w as f64 * s).round() as u32).max(1),
                ((h as f64 * s).round() as u32).max(1),
            )
        } else {
            (SIZE, SIZE)
        }
    };
    thread_local! {
        static PIXELS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PIXELS.with(|buf| {
        let mut pixels = buf.borrow_mut();
        let (w, h) = decode_into(src, &target, &mut pixels)?;
        if w == 0 || h == 0 {
            return Err("an image with no pixels".into());
        }
        // The target from the decoded size: DCT scaling keeps the aspect ratio.
        let (tw, th) = target(w, h);
        let small = resize_rgb(&pixels, w, h, tw, th)?;
        encode_jpeg(&small, tw, th)
    })
}

/// Where the photos come from and go to. Each worker thread makes its own (see
/// [`Workers::start`]), so an HTTP client's connections stay with the thread that uses them.
pub trait Objects {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<bytes::Bytes, String>>;
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<(), String>>;
}

/// How many worker threads resize photos: `RESIZE_CPU_SLOTS`, or two per core, so that
/// a core has a photo to resize while another thread waits for its next photo's bytes.
pub fn cpu_slots() -> usize {
    std::env::var("RESIZE_CPU_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The handler's failure: more than half the batch failed.
#[derive(Debug)]
pub struct BatchFailed(pub Value);

/// One batch in flight: its photos' results, and who to tell when the last one is in.
struct Batch {
    src: String,
    dst: String,
    keys: Vec<String>,
    keep_aspect: bool,
    results: std::sync::Mutex<Vec<Option<Result<(), String>>>>,
    remaining: std::sync::atomic::AtomicUsize,
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Batch {
    fn finish(&self, index: usize, r: Result<(), String>) {
        if let Ok(mut results) = self.results.lock() {
            results[index] = Some(r);
        }
        // One wake-up per batch, not one per photo.
        if self
            .remaining
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            if let Some(tx) = self.done.lock().ok().and_then(|mut d| d.take()) {
                let _ = tx.send(());
            }
        }
    }
}

struct Job {
    batch: Arc<Batch>,
    index: usize,
}

/// Threads that each take a photo from start to end: get, resize, put. Each has its own
/// current-thread runtime and its own [`Objects`], so a photo never changes threads:
/// handing each photo's I/O and CPU work between a runtime and a blocking pool made
/// about ten context switches per photo, and they cost more than the I/O.
pub struct Workers {
    queue: std::sync::mpsc::Sender<Job>,
}

impl Workers {
    /// Starts `threads` threads; `make` makes each thread's [`Objects`], on that thread.
    pub fn start<F>(threads: usize, make: F) -> std::io::Result<Workers>
    where
        F: Fn() -> Box<dyn Objects> + Send + Sync + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let make = Arc::new(make);
        for i in 0..threads.max(1) {
            let (rx, make) = (rx.clone(), make.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("resize-{i}"))
                .spawn(move || {
                    let objects = make();
                    loop {
                        // The lock is held while waiting: whoever holds it takes the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            one_photo(&rt, &*objects, &job)
                        }))
                        .unwrap_or_else(|_| Err("the resize panicked".into()));
                        job.batch.finish(job.index, r);
                    }
                })?;
        }
        Ok(Workers { queue: tx })
    }

    /// Runs one batch: `{"BatchInput": {source_bucket_name, destination_bucket_name},
    /// "Items": [{"Key"...}]}`, and answers `{"succeeded": n, "failed": [{key, error}]}`.
    pub async fn run_batch(&self, event: Value, keep_aspect: bool) -> Result<Value, BatchFailed> {
        let input = &event["BatchInput"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let keys: Vec<String> = event["Items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("Key").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let total = keys.len();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let batch = Arc::new(Batch {
            src: text(&input["source_bucket_name"]),
            dst: text(&input["destination_bucket_name"]),
            results: std::sync::Mutex::new(vec![None; total]),
            remaining: std::sync::atomic::AtomicUsize::new(total),
            done: std::sync::Mutex::new(Some(tx)),
            keys,
            keep_aspect,
        });
        let mut queued = 0;
        for index in 0..total {
            let job = Job {
                batch: batch.clone(),
                index,
            };
            if self.queue.send(job).is_err() {
                break;
            }
            queued += 1;
        }
        if queued == total && total > 0 {
            let _ = rx.await;
        }
        let results = batch.results.lock().map(|r| r.clone()).unwrap_or_default();
        let failed: Vec<Value> = batch
            .keys
            .iter()
            .zip(results.iter().chain(std::iter::repeat(&None)))
            .filter_map(|(key, r)| match r {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(json!({"key": key, "error": e})),
                None => Some(json!({"key": key, "error": "no resize worker is running"})),
            })
            .collect();
        let out = json!({"succeeded": total - failed.len(), "failed": failed});
        if failed.len() * 2 > total {
            return Err(BatchFailed(out));
        }
        Ok(out)
    }
}

fn one_photo(rt: &tokio::runtime::Runtime, objects: &dyn Objects, job: &Job) -> Result<(), String> {
    let b = &job.batch;
    let key = &b.keys[job.index];
    let body = rt.block_on(objects.get(&b.src, key))?;
    let thumb = thumbnail(&body, b.keep_aspect)?;
    drop(body);
    rt.block_on(objects.put(&b.dst, key, thumb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                px.extend([(x % 256) as u8, (y % 256) as u8, 128]);
            }
        }
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn the_lanczos_table_matches_the_formula() {
        let exact = |x: f64| {
            let s = |x: f64| {
                if x == 0.0 {
                    1.0
                } else {
                    (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI)
                }
            };
            if x.abs() < 3.0 {
                s(x) * s(x / 3.0)
            } else {
                0.0
            }
        };
        for i in -4000..=4000 {
            let x = i as f64 * 0.000_777;
            assert!((lanczos3_from_table(x) - exact(x)).abs() < 1e-6, "{x}");
        }
    }

    /// Buckets in memory, shared by every worker thread's handle.
    #[derive(Clone, Default)]
    struct Memory(Arc<std::sync::Mutex<std::collections::HashMap<Place, Vec<u8>>>>);

    /// Bucket and key.
    type Place = (String, String);

    impl Objects for Memory {
        fn get<'a>(
            &'a self,
            bucket: &'a str,
            key: &'a str,
        ) -> LocalBoxFuture<'a, Result<bytes::Bytes, String>> {
            let found = self
                .0
                .lock()
                .unwrap()
                .get(&(bucket.into(), key.into()))
                .map(|b| bytes::Bytes::from(b.clone()));
            Box::pin(async move { found.ok_or_else(|| format!("NoSuchKey: {bucket}/{key}")) })
        }
        fn put<'a>(
            &'a self,
            bucket: &'a str,
            key: &'a str,
            body: Vec<u8>,
        ) -> LocalBoxFuture<'a, Result<(), String>> {
            self.0
                .lock()
                .unwrap()
                .insert((bucket.into(), key.into()), body);
            Box::pin(async { Ok(()) })
        }
    }

    fn batch(keys: &[&str]) -> Value {
        json!({
            "BatchInput": {"source_bucket_name": "in", "destination_bucket_name": "out"},
            "Items": keys.iter().map(|k| json!({"Key": k})).collect::<Vec<_>>(),
        })
    }

    #[tokio::test]
    async fn workers_resize_a_batch_and_report_each_failure() {
        let memory = Memory::default();
        for i in 0..12 {
            let photo = jpeg(200 + i * 10, 150);
            memory
                .0
                .lock()
                .unwrap()
                .insert(("in".into(), format!("p{i}.jpg")), photo);
        }
        memory
            .0
            .lock()
            .unwrap()
            .insert(("in".into(), "bad.jpg".into()), b"\xFF\xD8 no".to_vec());
        let m = memory.clone();
        let workers = Workers::start(3, move || Box::new(m.clone())).unwrap();
        let mut keys: Vec<String> = (0..12).map(|i| format!("p{i}.jpg")).collect();
        keys.extend(["bad.jpg".into(), "missing.jpg".into()]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let out = workers.run_batch(batch(&keys), false).await.unwrap();
        assert_eq!(out["succeeded"], 12, "{out}");
        let failed = out["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 2, "{out}");
        assert_eq!(failed[0]["key"], "bad.jpg");
        assert!(
            failed[0]["error"].as_str().unwrap().contains("JPEG"),
            "{out}"
        );
        assert_eq!(failed[1]["key"], "missing.jpg");
        assert!(
            failed[1]["error"].as_str().unwrap().contains("NoSuchKey"),
            "{out}"
        );
        for i in 0..12 {
            let thumb = memory.0.lock().unwrap()[&("out".to_string(), format!("p{i}.jpg"))].clone();
            assert_eq!(decode(&thumb).unwrap().1, SIZE);
        }

        // More than half failed: the batch fails, with the same report.
        let BatchFailed(out) = workers
            .run_batch(batch(&["p0.jpg", "bad.jpg", "missing.jpg"]), false)
            .await
            .unwrap_err();
        assert_eq!(out["succeeded"], 1, "{out}");
        // An empty batch needs no worker.
        let out = workers.run_batch(batch(&[]), false).await.unwrap();
        assert_eq!(out, json!({"succeeded": 0, "failed": []}));
    }

    #[test]
    fn thumbnails_are_128_square_or_fit() {
        let t = thumbnail(&jpeg(500, 375), false).unwrap();
        let (_, w, h) = decode(&t).unwrap();
        assert_eq!((w, h), (128, 128));
        let t = thumbnail(&jpeg(500, 250), true).unwrap();
        let (_, w, h) = decode(&t).unwrap();
        assert_eq!((w, h), (128, 64));
        assert!(thumbnail(b"not an image", false).is_err());
    }
}
