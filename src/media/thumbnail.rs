//! Thumbnails: `scale` fits the image inside the requested box, `crop` fills the box and
//! cuts the overflow. Images are never enlarged. Images with transparency become PNG,
//! others JPEG.
//!
//! A small file can claim to be a huge image (a few kilobytes of PNG that decode to
//! gigabytes), so decoding is bounded: [`MAX_PIXELS`] and [`MAX_SIDE_DECODED`] are checked
//! from the header before anything is allocated.

use std::{io::Cursor, path::Path};

use image::{DynamicImage, GenericImageView, ImageFormat, ImageReader, Limits, imageops::FilterType};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Scale,
    Crop,
}

/// A requested thumbnail size and method.
#[derive(Debug, Clone, Copy)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub method: Method,
}

/// The largest side a thumbnail may ask for.
const MAX_SIDE: u32 = 1600;

/// The most pixels an image may have to be thumbnailed: 32 megapixels (Synapse's default
/// too), more than a phone camera's photo. Decoded as RGBA that is 128 MiB, the decoder's
/// allocation limit.
const MAX_PIXELS: u64 = 32 * 1024 * 1024;
/// The longest side an image may have to be thumbnailed (a panorama, within the pixels).
const MAX_SIDE_DECODED: u32 = 16 * 1024;

impl Thumbnail {
    pub fn new(width: u32, height: u32, method: Method) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidParam("thumbnail width and height must be positive".to_owned()));
        }
        Ok(Self { width: width.min(MAX_SIDE), height: height.min(MAX_SIDE), method })
    }

    /// The cache file name (without extension) for this request of `media_id`.
    pub fn file_name(&self, media_id: &str) -> String {
        let method = match self.method {
            Method::Scale => "scale",
            Method::Crop => "crop",
        };
        format!("{media_id}-{}x{}-{method}", self.width, self.height)
    }
}

pub struct Made {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub extension: &'static str,
}

/// The file extensions thumbnails are stored under.
pub const EXTENSIONS: [&str; 2] = ["png", "jpg"];

pub fn content_type_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jpg") => "image/jpeg",
        _ => "image/png",
    }
}

/// What an image's header says.
pub struct Probed {
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
}

/// An image's size and type, read from its header alone; `None` when the bytes are no
/// image this module can thumbnail.
pub fn probe(bytes: &[u8]) -> Option<Probed> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    let content_type = reader.format()?.to_mime_type();
    let (width, height) = reader.into_dimensions().ok()?;
    Some(Probed { width, height, content_type })
}

/// Decodes an image within the limits above.
fn decode(original: &[u8]) -> Result<DynamicImage> {
    let refused =
        |e: &dyn std::fmt::Display| Error::InvalidParam(format!("cannot make a thumbnail of this file: {e}"));
    let reader = || ImageReader::new(Cursor::new(original)).with_guessed_format().map_err(|e| refused(&e));
    // The header alone gives the size.
    let (width, height) = reader()?.into_dimensions().map_err(|e| refused(&e))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(refused(&format!("{width}x{height} is more than {MAX_PIXELS} pixels")));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_DECODED);
    limits.max_image_height = Some(MAX_SIDE_DECODED);
    limits.max_alloc = Some(MAX_PIXELS * 4);
    let mut reader = reader()?;
    reader.limits(limits);
    reader.decode().map_err(|e| refused(&e))
}

pub fn make(original: &[u8], request: Thumbnail) -> Result<Made> {
    let image = decode(original)?;
    let (width, height) = image.dimensions();
    let thumbnail: DynamicImage = match request.method {
        Method::Scale if request.width >= width && request.height >= height => image,
        Method::Scale => image.resize(request.width, request.height, FilterType::Triangle),
        Method::Crop => {
            let w = request.width.min(width);
            let h = request.height.min(height);
            image.resize_to_fill(w, h, FilterType::Triangle)
        }
    };
    let mut bytes = Vec::new();
    let (format, content_type, extension) = if thumbnail.color().has_alpha() {
        (ImageFormat::Png, "image/png", "png")
    } else {
        (ImageFormat::Jpeg, "image/jpeg", "jpg")
    };
    let thumbnail =
        if format == ImageFormat::Jpeg { DynamicImage::ImageRgb8(thumbnail.to_rgb8()) } else { thumbnail };
    thumbnail
        .write_to(&mut Cursor::new(&mut bytes), format)
        .map_err(|e| Error::Internal(format!("encoding thumbnail: {e}")))?;
    Ok(Made { bytes, content_type, extension })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            width,
            height,
            image::Rgba([200, 10, 10, 128]),
        ));
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn scale_fits_the_box_and_keeps_the_aspect_ratio() {
        let made = make(&png(400, 200), Thumbnail::new(100, 100, Method::Scale).unwrap()).unwrap();
        let image = image::load_from_memory(&made.bytes).unwrap();
        assert_eq!(image.dimensions(), (100, 50));
        assert_eq!(made.content_type, "image/png");
    }

    #[test]
    fn crop_fills_the_box() {
        let made = make(&png(400, 200), Thumbnail::new(64, 64, Method::Crop).unwrap()).unwrap();
        assert_eq!(image::load_from_memory(&made.bytes).unwrap().dimensions(), (64, 64));
    }

    #[test]
    fn small_images_are_not_enlarged() {
        let made = make(&png(20, 10), Thumbnail::new(640, 480, Method::Scale).unwrap()).unwrap();
        assert_eq!(image::load_from_memory(&made.bytes).unwrap().dimensions(), (20, 10));
    }

    /// PNG's chunk checksum (CRC-32, reflected, polynomial 0xEDB88320).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn images_too_large_to_decode_safely_are_refused_from_their_header() {
        // Few bytes on disk, but past the longest side.
        let error = make(&png(MAX_SIDE_DECODED + 1, 1), Thumbnail::new(32, 32, Method::Scale).unwrap());
        assert!(error.is_err());
        // A header claiming 40 megapixels is refused before any pixel is decoded.
        let mut claims_huge = png(1, 1);
        // IHDR's type and data are bytes 12..29 (width and height first), its CRC 29..33.
        claims_huge[16..20].copy_from_slice(&8000u32.to_be_bytes());
        claims_huge[20..24].copy_from_slice(&5000u32.to_be_bytes());
        let crc = crc32(&claims_huge[12..29]);
        claims_huge[29..33].copy_from_slice(&crc.to_be_bytes());
        let error = make(&claims_huge, Thumbnail::new(32, 32, Method::Scale).unwrap()).err().unwrap();
        assert!(error.to_string().contains("pixels"), "{error}");
    }

    #[test]
    fn non_images_are_refused() {
        assert!(make(b"not an image", Thumbnail::new(32, 32, Method::Scale).unwrap()).is_err());
    }
}
