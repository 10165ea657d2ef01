/// Totals for one piece of text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub lines: usize,
    pub words: usize,
    pub bytes: usize,
}

impl Stats {
    /// Add the totals of `other` to these, as `wc` does for several files.   
    pub fn merge(&mut self, other: Stats) {
        self.lines += other.lines;
        self.words += other.words;
        self.bytes += other.bytes;
    }
}
