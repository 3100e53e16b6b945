//! Rows of fixed-width text columns with a chart filling the rest. When a panel is narrow the
//! least important columns go first, so an 80x24 screen still shows what matters.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;

use super::text;

/// Cells between columns.
pub const GAP: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub title: &'static str,
    pub width: u16,
    pub align: Align,
    /// 0 is kept longest; higher numbers are dropped first when space runs out.
    pub priority: u8,
}

impl Column {
    pub const fn left(title: &'static str, width: u16, priority: u8) -> Self {
        Column {
            title,
            width,
            align: Align::Left,
            priority,
        }
    }

    pub const fn right(title: &'static str, width: u16, priority: u8) -> Self {
        Column {
            title,
            width,
            align: Align::Right,
            priority,
        }
    }
}

/// The columns that fit in `width` leaving `reserve` cells (for a chart), in order. Drops the
/// least important first (the rightmost among equals); priority-0 columns are never dropped.
pub fn fit(columns: &[Column], width: u16, reserve: u16) -> Vec<usize> {
    let mut kept: Vec<usize> = (0..columns.len()).collect();
    while used_width(columns, &kept) + reserve > width {
        let drop = kept
            .iter()
            .enumerate()
            .filter(|(_, i)| columns[**i].priority > 0)
            .max_by_key(|(pos, i)| (columns[**i].priority, *pos))
            .map(|(pos, _)| pos);
        match drop {
            Some(pos) => {
                kept.remove(pos);
            }
            None => break,
        }
    }
    kept
}

/// Width the kept columns take, gaps included.
pub fn used_width(columns: &[Column], kept: &[usize]) -> u16 {
    kept.iter().map(|i| columns[*i].width + GAP).sum()
}

/// Draws one row: `cells[i]` goes in column `i` (cells of dropped columns are skipped). Returns
/// the column where the rest of the row (the chart) starts.
pub fn draw_row(
    buf: &mut Buffer,
    row: Rect,
    columns: &[Column],
    kept: &[usize],
    cells: &[Vec<Span<'_>>],
) -> u16 {
    let mut x = row.x;
    for &i in kept {
        let column = columns[i];
        let width = column.width.min(row.right().saturating_sub(x));
        if width == 0 {
            break;
        }
        let area = Rect::new(x, row.y, width, 1);
        let spans = cells.get(i).map(Vec::as_slice).unwrap_or_default();
        match column.align {
            Align::Left => text::put_spans(buf, area, spans),
            Align::Right => text::put_spans_right(buf, area, spans),
        };
        x += column.width + GAP;
    }
    x.min(row.right())
}

/// The column titles, and the chart's title after them, in `style`; returns where the chart starts.
pub fn draw_header(
    buf: &mut Buffer,
    row: Rect,
    columns: &[Column],
    kept: &[usize],
    style: Style,
    chart_title: &str,
) -> u16 {
    let cells: Vec<Vec<Span<'_>>> = columns
        .iter()
        .map(|c| vec![Span::styled(c.title, style)])
        .collect();
    let chart_x = draw_row(buf, row, columns, kept, &cells);
    if chart_x < row.right() {
        let chart = Rect::new(chart_x, row.y, row.right() - chart_x, 1);
        super::text::put_spans(buf, chart, &[Span::styled(chart_title, style)]);
    }
    chart_x
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 4] = [
        Column::left("name", 10, 0),
        Column::right("pending", 7, 0),
        Column::right("ack", 5, 2),
        Column::right("msgs", 6, 1),
    ];

    #[test]
    fn the_least_important_columns_go_first() {
        assert_eq!(fit(&COLUMNS, 100, 10), vec![0, 1, 2, 3]);
        assert_eq!(fit(&COLUMNS, 36, 10), vec![0, 1, 3]);
        assert_eq!(fit(&COLUMNS, 28, 10), vec![0, 1]);
        assert_eq!(fit(&COLUMNS, 5, 10), vec![0, 1], "priority 0 stays");
    }

    #[test]
    fn cells_are_aligned_in_their_columns() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 20, 1));
        let cells = vec![vec![Span::raw("TASKS")], vec![Span::raw("42")]];
        let area = buf.area;
        let end = draw_row(&mut buf, area, &COLUMNS[..2], &[0, 1], &cells);
        let row: String = buf.content().iter().map(|c| c.symbol()).collect();
        assert_eq!(row, "TASKS           42  ");
        assert_eq!(end, 19);
    }
}
