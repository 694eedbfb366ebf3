//! Every bound the core enforces, in one place. A header that asks for more gets an
//! [`Error::Limit`](crate::Error::Limit) or a finding that names the bound.

/// Metadata memory one image may need, whatever its header claims: a table at
/// [`MAX_TABLE_BYTES`], the span cache, and the small rest (tests/memory.rs measures it).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Largest single metadata table (L1, L2 window, bitmap, map) read into memory at once:
/// a 32 MiB VDI block map is an 8 TiB disk, a 32 MiB qcow2 L1 (QEMU's own limit) 2 PiB.
pub const MAX_TABLE_BYTES: u64 = 32 << 20;
/// Bytes the span cache keeps for coalesced metadata reads, per file.
pub const SPAN_CACHE_BYTES: usize = 16 << 20;
/// Reads closer than this are merged into one read by `prefetch`.
pub const COALESCE_GAP: u64 = 256 << 10;
/// Largest single coalesced read.
pub const MAX_COALESCED_READ: u64 = 8 << 20;
/// Deepest backing chain followed (QEMU has no fixed limit; real chains are short).
pub const MAX_CHAIN_DEPTH: usize = 64;
/// Largest virtual size accepted (2^53 bytes = 8 PiB): every offset stays exact as a JS number.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 53;
/// Chains opened inside chains (an image file in its own format, which may have one too).
pub const MAX_NESTING: u32 = 8;
/// Files probed when looking for a parent by its identity.
pub const MAX_CANDIDATES: usize = 1000;
/// Longest file name read from a header (QEMU's PATH_MAX).
pub const MAX_NAME_BYTES: u64 = 4096;
/// Most findings kept per check; the rest are counted, not stored.
pub const MAX_FINDINGS: usize = 10_000;
/// Most cells in an allocation-map picture; larger images aggregate several clusters per cell.
pub const MAX_MAP_CELLS: u64 = 16 << 20;
/// Runs one step of a generic walk (map, convert, compare, report, the page's cells) may take
/// from each layer (`Image::runs_end`), about 16 MiB.
pub const MAP_WINDOW_RUNS: u64 = 1 << 19;
/// Most map runs listed in a whole-inspection report (`diskscope report`, the page's JSON
/// download); the rest are counted. About 100 bytes of JSON each.
pub const MAX_REPORT_MAP_RUNS: usize = 1 << 20;
/// Reads from the files (after the span cache) one open may make, backing files and
/// files probed for a parent included. The core has no clock, so this bounds the time an
/// open takes: in the browser each read costs about 1.5 ms (shared/research/webspike.md),
/// so at most about 30 s; natively well under a second. Images that open normally make
/// tens of reads.
pub const MAX_OPEN_READS: u64 = 20_000;
/// Bytes one open may read (after the span cache): every metadata table at its limit
/// several times over, never a scan of a whole disk.
pub const MAX_OPEN_BYTES: u64 = 1 << 30;
