use std::io::Read;

fn main() -> std::io::Result<()> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    // TODO: accept file names as arguments, like `wc` does.
    let stats = tally::count(&text);
    println!("{:>7} {:>7} {:>7}", stats.lines, stats.words, stats.bytes);
    Ok(())
}
