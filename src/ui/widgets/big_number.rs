//! Three-row digits for the zoomed (screen share) view, so the key numbers read from the back of
//! the room. Digits, `.`, `:`, `-` and `/` are big; any other character (units) sits on the
//! bottom row at normal size.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

pub const HEIGHT: u16 = 3;

fn glyph(c: char) -> Option<[&'static str; 3]> {
    Some(match c {
        '0' => ["┌─┐", "│ │", "└─┘"],
        '1' => ["╶┐ ", " │ ", "╶┴╴"],
        '2' => ["╶─┐", "┌─┘", "└─╴"],
        '3' => ["╶─┐", " ─┤", "╶─┘"],
        '4' => ["╷ ╷", "└─┤", "  ╵"],
        '5' => ["┌─╴", "└─┐", "╶─┘"],
        '6' => ["┌─╴", "├─┐", "└─┘"],
        '7' => ["╶─┐", "  │", "  ╵"],
        '8' => ["┌─┐", "├─┤", "└─┘"],
        '9' => ["┌─┐", "└─┤", "╶─┘"],
        '.' => [" ", " ", "."],
        ':' => [" ", "·", "·"],
        '-' => ["   ", "╶─╴", "   "],
        '/' => ["  ╱", " ╱ ", "╱  "],
        _ => return None,
    })
}

/// Display width of `text` in big digits (one column between glyphs).
pub fn width(text: &str) -> u16 {
    text.chars()
        .map(|c| glyph(c).map_or(1, |g| g[0].chars().count() as u16 + 1))
        .sum()
}

/// Draws `text` from the top-left of `area`; clipped to it.
pub fn render(buf: &mut Buffer, area: Rect, text: &str, style: Style) {
    let area = area.intersection(*buf.area());
    if area.height < HEIGHT {
        return;
    }
    let mut x = area.x;
    for c in text.chars() {
        let (rows, w) = match glyph(c) {
            Some(g) => (g, g[0].chars().count() as u16),
            None => {
                if x < area.right() {
                    buf.set_stringn(x, area.y + 2, c.to_string(), 1, style);
                }
                x += 1;
                continue;
            }
        };
        if x + w > area.right() {
            break;
        }
        for (dy, row) in rows.iter().enumerate() {
            buf.set_string(x, area.y + dy as u16, row, style);
        }
        x += w + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_three_rows_tall_and_units_sit_on_the_bottom_row() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 3));
        let area = buf.area;
        render(&mut buf, area, "10ms", Style::new());
        let rows: Vec<String> = (0..3)
            .map(|y| (0..12).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        assert_eq!(rows, ["╶┐  ┌─┐     ", " │  │ │     ", "╶┴╴ └─┘ ms  "]);
        assert_eq!(width("10ms"), 10);
    }

    #[test]
    fn too_little_room_draws_nothing_or_clips() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 5, 2));
        let area = buf.area;
        render(&mut buf, area, "8", Style::new());
        assert!(buf.content().iter().all(|c| c.symbol() == " "));
        let mut buf = Buffer::empty(Rect::new(0, 0, 5, 3));
        let area = buf.area;
        render(&mut buf, area, "88", Style::new());
        assert_eq!(buf[(4, 0)].symbol(), " ", "the second glyph does not fit");
    }
}
