//! Word and line counting for plain text.

mod stats;

pub use stats::Stats;

/// Count the lines, words and bytes of `text`.
pub fn count(text: &str) -> Stats {
    let mut stats = Stats::default();
    for line in text.lines() {
        stats.lines += 1;
        stats.words += line.split_whitespace().count();
    }
    stats.bytes = text.len();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_lines() {
        let stats = count("one two\nthree\n");
        assert_eq!(stats.lines, 2);
        assert_eq!(stats.words, 3);
        assert_eq!(stats.bytes, 14);
    }
}
