//! Where a walk's step may end for a format whose runs are as fine as a sector in some
//! places and a whole table's reach in others ([`Image::runs_end`](crate::Image::runs_end)).

/// The guest offset a step from `pos` may reach over a table of `blocks` blocks of `block`
/// bytes, having had at most `runs` runs, when block `i` yields at most `cost(i)` (at least
/// 1). Past the table everything is one run. When the first block alone costs more, the
/// step takes `runs` granules of `fine` bytes, as a walk that knows nothing would.
pub fn by_blocks(pos: u64, block: u64, blocks: u64, fine: u64, runs: u64, cost: impl Fn(u64) -> u64) -> u64 {
    match spend(pos, block, blocks, runs, cost) {
        (i, _) if i >= blocks => u64::MAX,
        (i, _) if i == pos / block.max(1) => pos.saturating_add(runs.saturating_mul(fine.max(1))),
        (i, _) => i * block,
    }
}

/// The blocks from the one holding `pos` that a budget of `runs` pays for: the first block
/// it cannot pay for (`blocks` if it pays for all), and the runs left.
pub fn spend(pos: u64, block: u64, blocks: u64, runs: u64, cost: impl Fn(u64) -> u64) -> (u64, u64) {
    let (mut i, mut left) = (pos / block.max(1), runs);
    while i < blocks {
        let c = cost(i).max(1);
        if c > left {
            break;
        }
        left -= c;
        i += 1;
    }
    (i, left)
}

#[cfg(test)]
mod tests {
    use super::by_blocks;

    #[test]
    fn cheap_blocks_go_far_and_dear_ones_stop_the_step() {
        // Blocks of 1 MiB: every fourth costs 2048 runs, the rest one.
        let cost = |i: u64| if i % 4 == 3 { 2048 } else { 1 };
        assert_eq!(by_blocks(0, 1 << 20, 1000, 512, 2051, cost), 4 << 20);
        assert_eq!(by_blocks(0, 1 << 20, 1000, 512, 2050, cost), 3 << 20);
        // A first block dearer than the budget: `runs` granules, from `pos`.
        assert_eq!(by_blocks((3 << 20) + 512, 1 << 20, 1000, 512, 100, cost), (3 << 20) + 512 + 100 * 512);
        // Past the table: one run to the end of the disk, whatever it claims.
        assert_eq!(by_blocks(0, 1 << 20, 8, 512, 1 << 19, |_| 1), u64::MAX);
        assert_eq!(by_blocks(9 << 20, 1 << 20, 8, 512, 1, |_| 1 << 30), u64::MAX);
    }
}
