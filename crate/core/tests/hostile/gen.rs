//! The generator: small, valid images written field by field from the specs, which each
//! case then damages in one place.

pub fn put(b: &mut Vec<u8>, at: u64, v: &[u8]) {
    let at = at as usize;
    if b.len() < at + v.len() {
        b.resize(at + v.len(), 0);
    }
    b[at..at + v.len()].copy_from_slice(v);
}

pub fn be32(b: &mut Vec<u8>, at: u64, v: u32) {
    put(b, at, &v.to_be_bytes())
}

pub fn be64(b: &mut Vec<u8>, at: u64, v: u64) {
    put(b, at, &v.to_be_bytes())
}

pub fn le32(b: &mut Vec<u8>, at: u64, v: u32) {
    put(b, at, &v.to_le_bytes())
}

pub fn le64(b: &mut Vec<u8>, at: u64, v: u64) {
    put(b, at, &v.to_le_bytes())
}

/// A qcow2 v3 image of `size` bytes with 64 KiB clusters, laid out as
/// header | refcount table | refcount block | L1 | L2 | data, guest cluster 0 written
/// with 0x5a. Every field's offset is public so cases can damage it.
pub struct Qcow2 {
    pub file: Vec<u8>,
}

impl Qcow2 {
    pub const C: u64 = 65536;
    pub const REFTABLE: u64 = Self::C;
    pub const REFBLOCK: u64 = 2 * Self::C;
    pub const L1: u64 = 3 * Self::C;
    pub const L2: u64 = 4 * Self::C;
    pub const DATA: u64 = 5 * Self::C;
    /// Byte offsets of header fields (QEMU's qcow2.txt).
    pub const BACKING_OFFSET: u64 = 8;
    pub const BACKING_SIZE: u64 = 16;
    pub const CLUSTER_BITS: u64 = 20;
    pub const SIZE: u64 = 24;
    pub const L1_SIZE: u64 = 36;
    pub const L1_OFFSET: u64 = 40;
    pub const COPIED: u64 = 1 << 63;
    pub const COMPRESSED: u64 = 1 << 62;

    pub fn new(size: u64) -> Qcow2 {
        let c = Self::C;
        let mut f = Vec::new();
        put(&mut f, 0, b"QFI\xfb");
        be32(&mut f, 4, 3);
        be32(&mut f, Self::CLUSTER_BITS, 16);
        be64(&mut f, Self::SIZE, size);
        let l1_size = size.div_ceil(c * (c / 8)).max(1);
        be32(&mut f, Self::L1_SIZE, l1_size as u32);
        be64(&mut f, Self::L1_OFFSET, Self::L1);
        be64(&mut f, 48, Self::REFTABLE);
        be32(&mut f, 56, 1);
        be32(&mut f, 96, 4);
        be32(&mut f, 100, 104);
        be64(&mut f, Self::REFTABLE, Self::REFBLOCK);
        for k in 0..6 {
            put(&mut f, Self::REFBLOCK + 2 * k, &1u16.to_be_bytes());
        }
        be64(&mut f, Self::L1, Self::L2 | Self::COPIED);
        be64(&mut f, Self::L2, Self::DATA | Self::COPIED);
        put(&mut f, Self::DATA, &vec![0x5a; c as usize]);
        Qcow2 { file: f }
    }

    /// Name a backing file (stored right after the header, as QEMU does).
    pub fn backing(mut self, name: &[u8]) -> Qcow2 {
        be64(&mut self.file, Self::BACKING_OFFSET, 104);
        be32(&mut self.file, Self::BACKING_SIZE, name.len() as u32);
        put(&mut self.file, 104, name);
        self
    }
}

/// A QED image of `size` bytes with 64 KiB clusters and 4-cluster tables:
/// header | L1 | L2 | data, guest cluster 0 written with 0x6b.
pub struct Qed {
    pub file: Vec<u8>,
}

impl Qed {
    pub const C: u64 = 65536;
    pub const L1: u64 = Self::C;
    pub const L2: u64 = 5 * Self::C;
    pub const DATA: u64 = 9 * Self::C;
    pub const BACKING_OFFSET: u64 = 56;
    pub const BACKING_SIZE: u64 = 60;

    pub fn new(size: u64) -> Qed {
        let mut f = Vec::new();
        put(&mut f, 0, b"QED\0");
        le32(&mut f, 4, Self::C as u32);
        le32(&mut f, 8, 4);
        le32(&mut f, 12, 1);
        le64(&mut f, 16, 0);
        le64(&mut f, 40, Self::L1);
        le64(&mut f, 48, size);
        le64(&mut f, Self::L1, Self::L2);
        le64(&mut f, Self::L2, Self::DATA);
        put(&mut f, Self::DATA, &vec![0x6b; Self::C as usize]);
        Qed { file: f }
    }

    /// Name a backing file (probed: it may be another QED) after the header.
    pub fn backing(mut self, name: &[u8]) -> Qed {
        le64(&mut self.file, 16, 1);
        le32(&mut self.file, Self::BACKING_OFFSET, 512);
        le32(&mut self.file, Self::BACKING_SIZE, name.len() as u32);
        put(&mut self.file, 512, name);
        self
    }
}

/// A VDI 1.1 dynamic image header with `blocks` blocks of 1 MiB, none allocated, the
/// block map at 512.
pub fn vdi(blocks: u32) -> Vec<u8> {
    let mut f = Vec::new();
    put(&mut f, 0, b"<<< Oracle VM VirtualBox Disk Image >>>\n");
    le32(&mut f, 64, 0xbeda_107f);
    le32(&mut f, 68, 0x0001_0001);
    le32(&mut f, 72, 0x190);
    le32(&mut f, 76, 1);
    le32(&mut f, 340, 512);
    le32(&mut f, 344, (512 + blocks as u64 * 4).next_multiple_of(1 << 20) as u32);
    le32(&mut f, 360, 512);
    le64(&mut f, 368, blocks as u64 * (1 << 20));
    le32(&mut f, 376, 1 << 20);
    le32(&mut f, 384, blocks);
    put(&mut f, 392, &[0x11; 16]);
    f.resize(512 + blocks as usize * 4, 0xff); // every block unallocated
    f
}

/// A Parallels image header (the extended magic) with `entries` BAT entries of 1 MiB
/// clusters, nothing allocated.
pub fn parallels(entries: u32) -> Vec<u8> {
    let mut f = Vec::new();
    put(&mut f, 0, b"WithouFreSpacExt");
    le32(&mut f, 16, 2);
    le32(&mut f, 20, 16);
    le32(&mut f, 24, 1);
    le32(&mut f, 28, 2048);
    le32(&mut f, 32, entries);
    le64(&mut f, 36, entries as u64 * 2048);
    let data_off = (64 + entries as u64 * 4).div_ceil(512).next_multiple_of(2048);
    le32(&mut f, 48, data_off as u32);
    f.resize(64 + entries as usize * 4, 0);
    f
}

/// A dynamic VHD: footer at 0 (and at the end of the file), dynamic header at 512, a BAT
/// of `entries` 2 MiB blocks at 1536, nothing allocated. Returns the bytes up to the
/// end of the BAT; the footer copy goes at `file_size - 512`.
pub fn vpc(entries: u32) -> (Vec<u8>, Vec<u8>) {
    let size = entries as u64 * (2 << 20);
    let mut footer = Vec::new();
    put(&mut footer, 0, b"conectix");
    be32(&mut footer, 8, 2);
    be32(&mut footer, 12, 0x0001_0000);
    be64(&mut footer, 16, 512);
    put(&mut footer, 28, b"dsk ");
    be64(&mut footer, 40, size);
    be64(&mut footer, 48, size);
    let cyl = (size / 512 / (16 * 255)).min(65535) as u16;
    put(&mut footer, 56, &cyl.to_be_bytes());
    put(&mut footer, 58, &[16, 255]);
    be32(&mut footer, 60, 3);
    footer.resize(512, 0);
    let sum = !footer.iter().map(|&b| b as u32).sum::<u32>();
    be32(&mut footer, 64, sum);
    let mut h = Vec::new();
    put(&mut h, 0, b"cxsparse");
    be64(&mut h, 8, u64::MAX);
    be64(&mut h, 16, 1536);
    be32(&mut h, 24, 0x0001_0000);
    be32(&mut h, 28, entries);
    be32(&mut h, 32, 2 << 20);
    h.resize(1024, 0);
    let sum = !h.iter().map(|&b| b as u32).sum::<u32>();
    be32(&mut h, 36, sum);
    let mut f = footer.clone();
    f.extend_from_slice(&h);
    f.resize(1536 + entries as usize * 4, 0xff);
    (f, footer)
}

/// A monolithic hosted sparse VMDK of 64 KiB grains whose directory (at sector 1) names
/// `tables` grain tables, each 8 sectors past the one before: no two touch. Returns the
/// bytes up to the end of the directory; the tables lie past it, in zeros.
pub fn vmdk_scattered_tables(tables: u32) -> Vec<u8> {
    let mut f = Vec::new();
    put(&mut f, 0, b"KDMV");
    le32(&mut f, 4, 1);
    le32(&mut f, 8, 1); // newline detection, no redundant directory
    le64(&mut f, 12, tables as u64 * 512 * 128);
    le64(&mut f, 20, 128);
    le32(&mut f, 44, 512);
    le64(&mut f, 56, 1);
    let first = 1 + (tables as u64 * 4).div_ceil(512);
    le64(&mut f, 64, (first + 8 * tables as u64).next_multiple_of(128));
    put(&mut f, 73, b"\n \r\n");
    f.resize(512, 0);
    for i in 0..tables as u64 {
        f.extend_from_slice(&((first + 8 * i) as u32).to_le_bytes());
    }
    f
}
