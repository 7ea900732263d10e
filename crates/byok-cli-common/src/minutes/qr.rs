//! A log's head as a QR code, drawn as a small inline SVG: one path, a run of dark modules per
//! stretch of a row, with the standard four-module quiet zone, so `zbarimg` (or a phone)
//! reads it off a printed page or a PDF.

use std::fmt::Write;

/// The quiet zone around the code, in modules (ISO/IEC 18004 asks for four).
const QUIET: usize = 4;

/// `data` as an SVG QR code (error correction M), `px` pixels wide where nothing sizes it
/// (CSS does in the HTML); `None` for data too long for a QR code (never a head).
pub fn svg(data: &str, px: usize) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M).ok()?;
    let width = code.width();
    let dark: Vec<bool> = code
        .to_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    let size = width + 2 * QUIET;
    let mut path = String::new();
    for (y, row) in dark.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] {
                x += 1;
            }
            let run = x - start;
            let _ = write!(path, "M{} {}h{run}v1h-{run}z", start + QUIET, y + QUIET);
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"{px}\" \
         height=\"{px}\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_head_fits_a_small_code() {
        let head = "3f3fea99e796b8e3109d9be3dbf2a631e3366d585b26f52f28628a28fcd6c73f";
        let svg = super::svg(head, 160).unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        // Version 5 at level M holds 84 bytes: 37 modules and the quiet zone.
        assert!(svg.contains("viewBox=\"0 0 45 45\""), "{svg}");
        assert!(svg.len() < 6000, "{} bytes", svg.len());
        assert!(super::svg(&"x".repeat(5000), 160).is_none());
    }
}
