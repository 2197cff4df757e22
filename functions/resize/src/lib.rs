//! What the seed's Go function did, for one batch of a Distributed Map: for each item,
//! get the photo, decode it, resize it to 128×128 with Lanczos3 (stretching, as the
//! seed did, unless `keep_aspect`), encode it as JPEG q75, and put it in the
//! destination bucket under the same key. Unlike the seed it reports every failure.

use fast_image_resize as fr;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

pub const SIZE: u32 = 128;
pub const QUALITY: u8 = 75;

/// Decodes JPEG (zune-jpeg), or PNG, GIF, BMP and WebP (the `image` crate), to RGB.
pub fn decode(src: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
    if src.starts_with(&[0xFF, 0xD8]) {
        let opts = zune_jpeg::zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(src, opts);
        let pixels = d.decode().map_err(|e| format!("not a valid JPEG: {e:?}"))?;
        let (w, h) = d.dimensions().ok_or("a JPEG without dimensions")?;
        return Ok((pixels, w as u32, h as u32));
    }
    let img = image::load_from_memory(src).map_err(|e| format!("not a decodable image: {e}"))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok((rgb.into_raw(), w, h))
}

/// Resizes RGB pixels with Lanczos3, reusing one resizer (buffers, coefficients) per thread.
pub fn resize_rgb(pixels: Vec<u8>, w: u32, h: u32, tw: u32, th: u32) -> Result<Vec<u8>, String> {
    let src_img = fr::images::Image::from_vec_u8(w, h, pixels, fr::PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    thread_local! {
        static RESIZER: std::cell::RefCell<fr::Resizer> = std::cell::RefCell::new(fr::Resizer::new());
    }
    RESIZER
        .with(|r| {
            r.borrow_mut().resize(
                &src_img,
                &mut dst,
                &fr::ResizeOptions::new()
                    .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3)),
            )
        })
        .map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
}

/// One photo to a `SIZE`×`SIZE` (or aspect-kept, fitting) JPEG at quality 75.
pub fn thumbnail(src: &[u8], keep_aspect: bool) -> Result<Vec<u8>, String> {
    let (pixels, w, h) = decode(src)?;
    if w == 0 || h == 0 {
        return Err("an image with no pixels".into());
    }
    let (tw, th) = if keep_aspect {
        let s = SIZE as f64 / w.max(h) as f64;
        (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        )
    } else {
        (SIZE, SIZE)
    };
    let small = resize_rgb(pixels, w, h, tw, th)?;
    let mut out = Vec::with_capacity(8 * 1024);
    jpeg_encoder::Encoder::new(&mut out, QUALITY)
        .encode(&small, tw as u16, th as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Where the photos come from and go to.
pub trait Objects: Send + Sync {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>>;
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The handler's failure: more than half the batch failed.
#[derive(Debug)]
pub struct BatchFailed(pub Value);

/// Runs one batch: `{"BatchInput": {source_bucket_name, destination_bucket_name}, "Items": [{"Key"...}]}`.
/// Photos are fetched and stored concurrently; the CPU work runs on `cpu` threads at most.
pub async fn process_batch(
    event: Value,
    objects: Arc<dyn Objects>,
    cpu: Arc<tokio::sync::Semaphore>,
    keep_aspect: bool,
) -> Result<Value, BatchFailed> {
    let input = &event["BatchInput"];
    let src = input["source_bucket_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dst = input["destination_bucket_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let keys: Vec<String> = event["Items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("Key").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let total = keys.len();
    let results: Vec<(String, Result<(), String>)> = futures::stream::iter(keys)
        .map(|key| {
            let (objects, cpu, src, dst) = (objects.clone(), cpu.clone(), src.clone(), dst.clone());
            async move {
                let r = async {
                    let body = objects.get(&src, &key).await?;
                    let _permit = cpu.acquire_owned().await.map_err(|e| e.to_string())?;
                    let thumb = tokio::task::spawn_blocking(move || thumbnail(&body, keep_aspect))
                        .await
                        .map_err(|e| e.to_string())??;
                    drop(_permit);
                    objects.put(&dst, &key, thumb).await
                }
                .await;
                (key, r)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<Value> = results
        .iter()
        .filter_map(|(k, r)| r.as_ref().err().map(|e| json!({"key": k, "error": e})))
        .collect();
    let out = json!({"succeeded": total - failed.len(), "failed": failed});
    if failed.len() * 2 > total {
        return Err(BatchFailed(out));
    }
    Ok(out)
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
