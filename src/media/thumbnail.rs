//! Thumbnails: `scale` fits the image inside the requested box, `crop` fills the box and
//! cuts the overflow. Images are never enlarged. Images with transparency become PNG,
//! others JPEG.

use std::{io::Cursor, path::Path};

use image::{DynamicImage, GenericImageView, ImageFormat, imageops::FilterType};

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

pub fn make(original: &[u8], request: Thumbnail) -> Result<Made> {
    let image = image::load_from_memory(original)
        .map_err(|e| Error::InvalidParam(format!("cannot make a thumbnail of this file: {e}")))?;
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

    #[test]
    fn non_images_are_refused() {
        assert!(make(b"not an image", Thumbnail::new(32, 32, Method::Scale).unwrap()).is_err());
    }
}
