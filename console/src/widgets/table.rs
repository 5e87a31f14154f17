//! Sortable tables: a header button per column that sorts by it (again: reverses).

/// The column a table is sorted by, and which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<C> {
    pub column: C,
    pub descending: bool,
}

impl<C: Copy + PartialEq> Sort<C> {
    pub fn new(column: C, descending: bool) -> Self {
        Self { column, descending }
    }

    /// A header cell; clicking it sorts by `column` (descending first: tables rank).
    pub fn header(&mut self, ui: &mut egui::Ui, title: &str, column: C) {
        let text = if self.column == column {
            format!("{title} {}", if self.descending { "▼" } else { "▲" })
        } else {
            title.to_owned()
        };
        if ui
            .add(egui::Button::new(egui::RichText::new(text).strong()).frame(false))
            .clicked()
        {
            if self.column == column {
                self.descending = !self.descending;
            } else {
                *self = Self::new(column, true);
            }
        }
    }

    /// Orders `a` and `b` by this sort, given their ascending order.
    pub fn apply(&self, ascending: std::cmp::Ordering) -> std::cmp::Ordering {
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }
}
