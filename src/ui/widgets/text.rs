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

/// Writes `spans` word-wrapped over at most `max_rows` rows of `area`; what does not fit ends in
/// `…`. Returns the rows used.
pub fn put_wrapped(buf: &mut Buffer, area: Rect, spans: &[Span<'_>], max_rows: u16) -> u16 {
    let rows = max_rows.min(area.height);
    if rows == 0 || area.width == 0 {
        return 0;
    }
    // Words keep their trailing space and their span's style.
    let mut words: Vec<Span<'_>> = Vec::new();
    for span in spans {
        for word in span.content.split_inclusive(' ') {
            words.push(Span::styled(word, span.style));
        }
    }
    let mut lines: Vec<Vec<Span<'_>>> = vec![Vec::new()];
    let mut used = 0u16;
    for word in words {
        let trimmed = word.content.trim_end().chars().count() as u16;
        // The last row takes whatever is left; put_spans cuts it with the ellipsis.
        if used > 0 && used + trimmed > area.width && lines.len() < rows as usize {
            lines.push(Vec::new());
            used = 0;
        }
        used += word.width() as u16;
        lines.last_mut().expect("one line at least").push(word);
    }
    for (i, line) in lines.iter().enumerate() {
        let row = Rect::new(area.x, area.y + i as u16, area.width, 1);
        put_spans(buf, row, &trim_end(line));
    }
    lines.len() as u16
}

fn trim_end<'a>(line: &[Span<'a>]) -> Vec<Span<'a>> {
    let mut out = line.to_vec();
    if let Some(last) = out.last_mut() {
        *last = Span::styled(last.content.trim_end().to_string(), last.style);
    }
    out
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
    fn long_text_wraps_at_words_and_is_cut_on_the_last_row() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 3));
        let area = buf.area;
        let rows = put_wrapped(
            &mut buf,
            area,
            &[Span::raw("DOWN since 10:04:01 (connection refused)")],
            3,
        );
        let text: Vec<String> = (0..3)
            .map(|y| (0..12).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        assert_eq!(rows, 3);
        assert_eq!(text, ["DOWN since  ", "10:04:01    ", "(connection…"]);
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 1));
        put_wrapped(
            &mut buf,
            area,
            &[Span::raw("up postgres://app:***@h/db")],
            1,
        );
        assert_eq!(row(&buf), "up postgres…", "one row fills like put_spans");
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 3));
        assert_eq!(put_wrapped(&mut buf, area, &[Span::raw("short")], 3), 1);
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
