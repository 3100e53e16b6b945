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
    let lines = wrap(spans, area.width, rows);
    for (i, line) in lines.iter().enumerate() {
        let row = Rect::new(area.x, area.y + i as u16, area.width, 1);
        put_spans(buf, row, &trim_end(line));
    }
    lines.len() as u16
}

/// The rows [`put_wrapped`] would use for `spans` in `width` columns, up to `max_rows`.
pub fn wrapped_rows(spans: &[Span<'_>], width: u16, max_rows: u16) -> u16 {
    if max_rows == 0 || width == 0 {
        return 0;
    }
    wrap(spans, width, max_rows).len() as u16
}

/// `spans` broken into at most `max_rows` lines of `width` columns, at spaces; a word longer
/// than a whole line is split inside. The last line takes whatever is left (it is cut when
/// drawn).
fn wrap<'a>(spans: &[Span<'a>], width: u16, max_rows: u16) -> Vec<Vec<Span<'a>>> {
    // Words keep their trailing space and their span's style.
    let mut words: Vec<Span<'a>> = Vec::new();
    for span in spans {
        for word in span.content.split_inclusive(' ') {
            if word.trim_end().chars().count() as u16 > width {
                let chars: Vec<char> = word.chars().collect();
                for chunk in chars.chunks(width.max(1) as usize) {
                    words.push(Span::styled(chunk.iter().collect::<String>(), span.style));
                }
            } else {
                words.push(Span::styled(word.to_string(), span.style));
            }
        }
    }
    let mut lines: Vec<Vec<Span<'a>>> = vec![Vec::new()];
    let mut used = 0u16;
    for word in words {
        let trimmed = word.content.trim_end().chars().count() as u16;
        if used > 0 && used + trimmed > width && lines.len() < max_rows as usize {
            lines.push(Vec::new());
            used = 0;
        }
        used += word.width() as u16;
        lines.last_mut().expect("one line at least").push(word);
    }
    lines
}

/// A piece of a line that is kept whole or left out, never cut: `forms` from the fullest to the
/// shortest (an abbreviated label), and how early it goes when even the shortest forms do not
/// fit (0 never; higher first).
#[derive(Debug, Clone)]
pub struct Part<'a> {
    pub forms: Vec<Vec<Span<'a>>>,
    pub drop: u8,
}

impl<'a> Part<'a> {
    pub fn new(spans: Vec<Span<'a>>) -> Self {
        Part {
            forms: vec![spans],
            drop: 0,
        }
    }

    /// A shorter form, tried (after the shorter forms of the parts to its right) before anything
    /// is left out.
    pub fn or(mut self, spans: Vec<Span<'a>>) -> Self {
        self.forms.push(spans);
        self
    }

    /// Left out (highest first, the rightmost among equals) when the shortest forms do not fit.
    pub fn drop(mut self, order: u8) -> Self {
        self.drop = order;
        self
    }
}

/// Writes `parts` on the first row of `area`: whole when they fit; otherwise the parts on the
/// right take their shorter forms first, then the droppable parts go (a `…` says so). Only a
/// line that cannot fit even then is cut. Returns the column after the last cell written.
pub fn put_parts(buf: &mut Buffer, area: Rect, parts: &[Part<'_>]) -> u16 {
    let spans = fit_parts(parts, area.width);
    put_spans(buf, area, &spans)
}

/// The spans [`put_parts`] writes in `width` columns.
pub fn fit_parts<'a>(parts: &[Part<'a>], width: u16) -> Vec<Span<'a>> {
    let mut form = vec![0usize; parts.len()];
    let mut kept = vec![true; parts.len()];
    let measure = |form: &[usize], kept: &[bool]| -> u16 {
        let dropped = kept.iter().any(|k| !k);
        let parts: u16 = parts
            .iter()
            .enumerate()
            .filter(|(i, _)| kept[*i])
            .map(|(i, p)| self::width(&p.forms[form[i]]))
            .sum();
        parts + if dropped { 2 } else { 0 }
    };
    while measure(&form, &kept) > width {
        if let Some(i) = (0..parts.len())
            .rev()
            .find(|i| form[*i] + 1 < parts[*i].forms.len())
        {
            form[i] += 1;
            continue;
        }
        let next = (0..parts.len())
            .filter(|i| kept[*i] && parts[*i].drop > 0)
            .max_by_key(|i| (parts[*i].drop, *i));
        match next {
            Some(i) => kept[i] = false,
            None => break,
        }
    }
    // What a dropped part freed goes back to fuller forms, from the left.
    for i in 0..parts.len() {
        while form[i] > 0 && kept[i] {
            form[i] -= 1;
            if measure(&form, &kept) > width {
                form[i] += 1;
                break;
            }
        }
    }
    let mut out: Vec<Span<'a>> = parts
        .iter()
        .enumerate()
        .filter(|(i, _)| kept[*i])
        .flat_map(|(i, p)| p.forms[form[i]].iter().cloned())
        .collect();
    if kept.iter().any(|k| !k) {
        let style = out.last().map(|s| s.style).unwrap_or_default();
        out.push(Span::styled(format!(" {ELLIPSIS}"), style));
    }
    out
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
    fn a_word_longer_than_a_row_is_split_rather_than_lost() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 8, 3));
        let area = buf.area;
        let rows = put_wrapped(&mut buf, area, &[Span::raw("refused http://10.0.0.1/x")], 3);
        let text: Vec<String> = (0..3)
            .map(|y| (0..8).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        assert_eq!(rows, 3);
        assert_eq!(text, ["refused ", "http://1", "0.0.0.1…"]);
        assert_eq!(
            wrapped_rows(&[Span::raw("refused http://10.0.0.1/x")], 8, 9),
            4
        );
        assert_eq!(wrapped_rows(&[Span::raw("short")], 8, 9), 1);
    }

    #[test]
    fn parts_shorten_from_the_right_then_drop_but_numbers_are_never_cut() {
        let parts = [
            Part::new(vec![Span::raw("waiting 2")]).or(vec![Span::raw("wait 2")]),
            Part::new(vec![Span::raw(" · idle 22")]).drop(1),
            Part::new(vec![Span::raw(" · idle_in_transaction 2")])
                .or(vec![Span::raw(" · idle-tx 2")]),
        ];
        let text = |width: u16| -> String {
            fit_parts(&parts, width)
                .iter()
                .map(|s| s.content.to_string())
                .collect()
        };
        assert_eq!(text(60), "waiting 2 · idle 22 · idle_in_transaction 2");
        assert_eq!(text(40), "waiting 2 · idle 22 · idle-tx 2");
        assert_eq!(text(28), "wait 2 · idle 22 · idle-tx 2");
        assert_eq!(text(22), "wait 2 · idle-tx 2 …");
        assert_eq!(
            text(24),
            "waiting 2 · idle-tx 2 …",
            "room freed goes back to labels"
        );
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 1));
        let area = buf.area;
        put_parts(&mut buf, area, &parts);
        assert_eq!(row(&buf), "wait 2 · id…", "nothing left to drop: cut");
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
