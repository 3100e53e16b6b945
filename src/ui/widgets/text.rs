//! Writing text into a row without spilling: what does not fit ends in `…`.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;

pub const ELLIPSIS: &str = "…";

/// Writes `spans` left to right on the first row of `area`; cuts with `…` when they do not fit.
/// Returns the column after the last cell written.
pub fn put_spans(buf: &mut Buffer, area: Rect, spans: &[Span<'_>]) -> u16 {
    let area = area.intersection(*buf.area());
    if area.is_empty() {
        return area.x;
    }
    let right = area.right();
    let total: usize = spans.iter().map(Span::width).sum();
    let fits = total <= area.width as usize;
    // Leave room for the ellipsis when cutting.
    let limit = if fits { right } else { right - 1 };
    let mut x = area.x;
    for span in spans {
        if x >= limit {
            break;
        }
        let (next, _) = buf.set_stringn(
            x,
            area.y,
            span.content.as_ref(),
            (limit - x) as usize,
            span.style,
        );
        x = next;
    }
    if !fits {
        let style = spans.last().map(|s| s.style).unwrap_or_default();
        buf.set_string(x.min(right - 1), area.y, ELLIPSIS, style);
        x = x.min(right - 1) + 1;
    }
    x
}

/// Writes `spans` right-aligned on the first row of `area` (cut from the left when too wide).
pub fn put_spans_right(buf: &mut Buffer, area: Rect, spans: &[Span<'_>]) -> u16 {
    let total: u16 = spans.iter().map(|s| s.width() as u16).sum();
    let start = area.right().saturating_sub(total).max(area.x);
    put_spans(
        buf,
        Rect {
            x: start,
            width: area.right() - start,
            ..area
        },
        spans,
    )
}

/// Total display width of some spans.
pub fn width(spans: &[Span<'_>]) -> u16 {
    spans.iter().map(|s| s.width() as u16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(buf: &Buffer) -> String {
        buf.content().iter().map(|c| c.symbol()).collect()
    }

    #[test]
    fn text_that_fits_is_written_whole() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 1));
        let end = put_spans(
            &mut buf,
            Rect::new(0, 0, 10, 1),
            &[Span::raw("ab"), Span::raw("cd")],
        );
        assert_eq!((row(&buf).as_str(), end), ("abcd      ", 4));
    }

    #[test]
    fn text_that_does_not_fit_ends_in_an_ellipsis() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 6, 1));
        put_spans(
            &mut buf,
            Rect::new(0, 0, 6, 1),
            &[Span::raw("connection refused")],
        );
        assert_eq!(row(&buf), "conne…");
    }

    #[test]
    fn nothing_happens_outside_the_buffer_or_in_an_empty_area() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 1));
        put_spans(&mut buf, Rect::new(0, 3, 4, 1), &[Span::raw("x")]);
        put_spans(&mut buf, Rect::new(0, 0, 0, 1), &[Span::raw("x")]);
        assert_eq!(row(&buf), "    ");
        put_spans_right(&mut buf, Rect::new(0, 0, 4, 1), &[Span::raw("ab")]);
        assert_eq!(row(&buf), "  ab");
    }
}
