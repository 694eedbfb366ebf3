//! `diskscope convert` must write the same raw bytes as `qemu-img convert -O raw`, and
//! `diskscope map --json` must print the same array as `qemu-img map --output=json`, for
//! QED images and chains that QEMU itself made.
mod common;
use common::*;

const SIZES: [u64; 2] = [MIB + 512, 3 * MIB + 4 * KIB + 512];
const CLUSTERS: [u64; 2] = [4 * KIB, 64 * KIB];

#[test]
fn empty_images() {
    let d = Scratch::new();
    for cluster in CLUSTERS {
        for size in SIZES {
            let name = format!("empty-{}-{}.qed", cluster, size);
            let img = qed(&d, &name, size, cluster);
            let out = matches_qemu(&d, &img, &name);
            assert_eq!(file_len(&out), size, "{}: the raw file must be as long as the disk", name);
        }
    }
}

/// One seed by default; `DISKSCOPE_TEST_SEEDS=N` tries N seeds (a longer hunt for bugs).
fn random_writes(cluster: u64, seed: u64) {
    let seeds: u64 = std::env::var("DISKSCOPE_TEST_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in seed..seed + seeds {
        let d = Scratch::new();
        let mut rng = Rng::new(seed);
        let pattern = pattern_file(&d, &mut rng);
        for size in SIZES {
            let name = format!("random-{}-{}.qed", cluster, size);
            let img = qed(&d, &name, size, cluster);
            let mix = Mix { writes: 300, max_sectors: 48, zeroes: true, discards: true };
            qemu_io(&d, "qed", &name, &random_commands(&mut rng, size, cluster, &pattern, mix));
            matches_qemu(&d, &img, &format!("{} (seed {:#x})", name, seed));
        }
    }
}

#[test]
fn random_writes_4k_clusters() {
    random_writes(4 * KIB, 0x5eed_0004);
}

#[test]
fn random_writes_64k_clusters() {
    random_writes(64 * KIB, 0x5eed_0064);
}

/// Zero writes in every shape QED distinguishes: whole clusters (stored as zero-cluster
/// entries), parts of clusters (written as zero bytes), over data and over nothing; and
/// discards, which QED ignores.
#[test]
fn zero_writes_and_discards() {
    let d = Scratch::new();
    for cluster in CLUSTERS {
        let size = 3 * MIB + 4 * KIB + 512;
        let name = format!("zeroes-{}.qed", cluster);
        let img = qed(&d, &name, size, cluster);
        let c = cluster;
        let cmds = [
            format!("write -q -P 0xaa 0 {}", 4 * c),
            format!("write -q -z -u {} {}", c, c),             // aligned, over data
            format!("write -q -z {} 1024", 2 * c + 512),       // unaligned, over data
            format!("write -q -z -u {} {}", 8 * c, 2 * c),     // aligned, over nothing
            format!("write -q -z {} 3072", 12 * c + 1024),     // unaligned, over nothing
            format!("write -q -P 0x55 {} {}", 16 * c, 2 * c),
            format!("discard -q {} {}", 16 * c, c),             // QED keeps the data
            format!("write -q -z {} {}", size - 1024, 1024),   // the disk's last sectors
            format!("write -q -P 0x11 {} 512", size - 2048),
        ];
        qemu_io(&d, "qed", &name, &cmds);
        matches_qemu(&d, &img, &name);
    }
}

/// A raw backing file (read through QED's BACKING_FORMAT_NO_PROBE), with an overlay that
/// writes over part of it and zeroes whole clusters of it.
#[test]
fn raw_backing_file() {
    let d = Scratch::new();
    let mut rng = Rng::new(0xbac0_0001);
    let pattern = pattern_file(&d, &mut rng);
    let size = 3 * MIB + 4 * KIB + 512;
    for cluster in CLUSTERS {
        let base = format!("base-{}.raw", cluster);
        raw(&d, &base, size);
        let mix = Mix { writes: 60, max_sectors: 64, zeroes: false, discards: false };
        qemu_io(&d, "raw", &base, &random_commands(&mut rng, size, cluster, &pattern, mix));
        let top = format!("top-{}.qed", cluster);
        let img = qed_over(&d, &top, size, cluster, &base, "raw");
        let mix = Mix { writes: 80, max_sectors: 32, zeroes: true, discards: false };
        qemu_io(&d, "qed", &top, &random_commands(&mut rng, size, cluster, &pattern, mix));
        matches_qemu(&d, &img, &top);
    }
}

/// Three levels: base.raw <- mid.qed <- top.qed, each layer writing some of the disk and
/// the top zeroing clusters that the lower layers hold data in.
#[test]
fn three_level_chain() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x3_1e7e1);
    let pattern = pattern_file(&d, &mut rng);
    let size = 3 * MIB + 4 * KIB + 512;
    let cluster = 64 * KIB;
    raw(&d, "base.raw", size);
    qemu_io(&d, "raw", "base.raw", &random_commands(&mut rng, size, cluster, &pattern, Mix { writes: 40, max_sectors: 128, zeroes: false, discards: false }));
    qed_over(&d, "mid.qed", size, cluster, "base.raw", "raw");
    qemu_io(&d, "qed", "mid.qed", &random_commands(&mut rng, size, cluster, &pattern, Mix { writes: 40, max_sectors: 64, zeroes: true, discards: false }));
    let top = qed_over(&d, "top.qed", size, cluster, "mid.qed", "qed");
    qemu_io(&d, "qed", "top.qed", &random_commands(&mut rng, size, cluster, &pattern, Mix { writes: 40, max_sectors: 32, zeroes: true, discards: false }));
    matches_qemu(&d, &top, "top.qed over mid.qed over base.raw");
    // The middle layer alone is a chain too.
    matches_qemu(&d, &d.path("mid.qed"), "mid.qed over base.raw");
}

/// A backing file shorter than the overlay: past its end the disk reads as zeros.
#[test]
fn backing_shorter_than_overlay() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x5407);
    let pattern = pattern_file(&d, &mut rng);
    for cluster in CLUSTERS {
        // 1 MiB + 512 ends inside a cluster, so one cluster of the overlay is half backed.
        let base_size = MIB + 512;
        let size = 3 * MIB + 4 * KIB + 512;
        let base = format!("short-{}.raw", cluster);
        raw(&d, &base, base_size);
        qemu_io(&d, "raw", &base, &[format!("write -q -s {} 0 {}", pattern, base_size)]);
        let mid = format!("short-{}.qed", cluster);
        qed(&d, &mid, base_size, cluster);
        qemu_io(&d, "qed", &mid, &[format!("write -q -P 0x77 {} {}", base_size - 4096, 4096)]);
        for (b, bf) in [(base.as_str(), "raw"), (mid.as_str(), "qed")] {
            let top = format!("over-{}", b.replace('.', "-"));
            let img = qed_over(&d, &top, size, cluster, b, bf);
            qemu_io(&d, "qed", &top, &[
                format!("write -q -P 0x33 {} 4096", 2 * cluster),
                format!("write -q -P 0x44 {} 512", size - 512),
            ]);
            matches_qemu(&d, &img, &top);
        }
    }
}

/// The raw output is sparse where the guest reads zeros.
#[test]
fn output_is_sparse() {
    let d = Scratch::new();
    let size = 3 * MIB + 4 * KIB + 512;
    let img = qed(&d, "sparse.qed", size, 64 * KIB);
    qemu_io(&d, "qed", "sparse.qed", &[
        "write -q -P 0x61 65536 8192".into(),
        // Data that is all zero bytes: qemu-img convert leaves it as a hole too.
        format!("write -q -P 0 {} 65536", MIB),
        format!("write -q -z -u {} 65536", 2 * MIB),
    ]);
    let out = convert_matches_qemu(&d, &img, "sparse.qed");
    let used = allocated_bytes(&out);
    assert!(used < size / 4, "the raw output should be sparse: {} of {} bytes are allocated", used, size);
}

/// Backing names are resolved against the folder of the image that names them (never the
/// working directory, which is `/` for every diskscope run here), and absolute names work.
#[test]
fn backing_names_relative_to_the_image() {
    let d = Scratch::new();
    std::fs::create_dir_all(d.path("disks/base")).unwrap();
    std::fs::create_dir_all(d.path("disks/vm")).unwrap();
    let size = 2 * MIB;
    raw(&d, "disks/base/base.raw", size);
    qemu_io(&d, "raw", "disks/base/base.raw", &["write -q -P 0x21 0 1M".into()]);
    let mid = qed_over(&d, "disks/vm/mid.qed", size, 64 * KIB, "../base/base.raw", "raw");
    qemu_io(&d, "qed", "disks/vm/mid.qed", &["write -q -P 0x22 64k 64k".into()]);
    let abs = mid.to_string_lossy().into_owned();
    let top = qed_over(&d, "disks/top.qed", size, 64 * KIB, &abs, "qed");
    qemu_io(&d, "qed", "disks/top.qed", &["write -q -P 0x23 192k 4k".into()]);
    matches_qemu(&d, &mid, "../base/base.raw from disks/vm/");
    matches_qemu(&d, &top, "absolute backing name");
}
