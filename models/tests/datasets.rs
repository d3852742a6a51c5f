//! The image data sets: the shipped files' facts, splits, normalisation, augmentation,
//! batching, IDX round trips and the errors on malformed input.

use std::path::{Path, PathBuf};

use models::ModelsError;
use models::datasets::{
    BatchOptions, CsvImageFormat, DataLoader, IdxArray, ImageDataset, Normalization, RandomShift,
    digits_path, load_digits, load_digits_from, load_mnist_5k, mnist_5k_path, parse_csv_images,
    read_csv_images, read_idx_dataset, shift_image, stratified_split, stratified_split_indices,
    write_idx_dataset,
};

/// A fresh directory under the system temp dir, unique per process and name.
fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "models-datasets-{}-{name}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

#[test]
fn mnist_5k_has_5000_images_500_per_class_in_0_255() {
    assert!(mnist_5k_path().ends_with("data/mnist_5k.csv.gz"));
    let mut ds = load_mnist_5k::<f32>().unwrap();
    assert_eq!(ds.shape(), [5000, 1, 28, 28]);
    assert_eq!(ds.images().len(), 5000 * 784);
    assert_eq!(ds.n_classes(), 10);
    assert_eq!(ds.class_counts(), vec![500; 10]);
    // The file is sorted by label.
    assert!(ds.labels().windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(ds.pixel_max(), 255.0);
    let (lo, hi) = min_max(ds.images());
    assert_eq!((lo, hi), (0.0, 255.0));
    assert!(ds.images().iter().all(|v| v.fract() == 0.0));
    // About 19 % of MNIST pixels are non-zero.
    let lit = ds.images().iter().filter(|&&v| v > 0.0).count() as f64 / ds.images().len() as f64;
    assert!((0.1..0.3).contains(&lit), "fraction of lit pixels {lit}");
    ds.to_unit_range();
    ds.to_unit_range(); // idempotent
    assert_eq!(min_max(ds.images()), (0.0, 1.0));
    assert_eq!(ds.pixel_max(), 1.0);
}

#[test]
fn digits_have_1797_images_of_8x8_in_0_16() {
    assert!(digits_path().ends_with("data/digits.csv.gz"));
    let ds = load_digits::<f64>().unwrap();
    assert_eq!(ds.shape(), [1797, 1, 8, 8]);
    assert_eq!(ds.n_classes(), 10);
    assert_eq!(
        ds.class_counts(),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let lo = ds.images().iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ds
        .images()
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((lo, hi), (0.0, 16.0));
    // The first image of the file is a 0 whose first row is 0,0,5,13,9,1,0,0.
    assert_eq!(ds.labels()[0], 0);
    assert_eq!(
        &ds.image(0).unwrap()[..8],
        &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
    );
    // f32 and f64 loads agree.
    let ds32 = load_digits_from::<f32>(&digits_path()).unwrap();
    assert_eq!(ds32.cast::<f64>(), ds);
}

#[test]
fn split_is_stratified_and_deterministic() {
    let ds = load_digits::<f32>().unwrap();
    let counts = ds.class_counts();
    let a = stratified_split_indices(ds.labels(), 10, 0.25, 11).unwrap();
    // Disjoint and complete.
    let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..ds.len()).collect::<Vec<_>>());
    // Each class split in the same proportion (to the nearest image).
    for c in 0..10 {
        let n_test = a.test.iter().filter(|&&i| ds.labels()[i] == c).count();
        assert_eq!(
            n_test,
            (counts[c] as f64 * 0.25).round() as usize,
            "class {c}"
        );
        let frac = n_test as f64 / counts[c] as f64;
        assert!((frac - 0.25).abs() <= 0.5 / counts[c] as f64 + 1e-12);
    }
    // Same seed: same split; another seed: another split.
    assert_eq!(
        stratified_split_indices(ds.labels(), 10, 0.25, 11).unwrap(),
        a
    );
    let b = stratified_split_indices(ds.labels(), 10, 0.25, 12).unwrap();
    assert_ne!(b.test, a.test);
    assert_eq!(b.test.len(), a.test.len());
    // The dataset-level split matches the indices.
    let (train, test) = stratified_split(&ds, 0.25, 11).unwrap();
    assert_eq!(train, ds.subset(&a.train).unwrap());
    assert_eq!(test, ds.subset(&a.test).unwrap());
    // MNIST: 500 per class, 20 % → 100 test images per class.
    let mnist = load_mnist_5k::<f32>().unwrap();
    let (tr, te) = stratified_split(&mnist, 0.2, 0).unwrap();
    assert_eq!(tr.class_counts(), vec![400; 10]);
    assert_eq!(te.class_counts(), vec![100; 10]);
    // Bad fractions are errors.
    for f in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(stratified_split_indices(ds.labels(), 10, f, 0).is_err());
    }
    assert!(stratified_split_indices(&[0, 1, 5], 3, 0.5, 0).is_err());
}

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let v = x.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

#[test]
fn normalisation_standardises_the_training_set() {
    let mut ds = load_mnist_5k::<f32>().unwrap();
    ds.to_unit_range();
    let (mut train, mut test) = stratified_split(&ds, 0.2, 3).unwrap();
    let norm = Normalization::fit(&train).unwrap();
    // MNIST's well-known statistics in [0, 1] units: mean ≈ 0.13, std ≈ 0.31.
    assert!((norm.mean[0] - 0.13).abs() < 0.02, "mean {}", norm.mean[0]);
    assert!((norm.std[0] - 0.31).abs() < 0.02, "std {}", norm.std[0]);
    norm.apply(&mut train).unwrap();
    norm.apply(&mut test).unwrap();
    let (m, s) = mean_std(train.images());
    assert!(m.abs() < 1e-4, "train mean {m}");
    assert!((s - 1.0).abs() < 1e-4, "train std {s}");
    // The test set uses the training statistics: close to, but not exactly, standard.
    let (mt, st) = mean_std(test.images());
    assert!(mt.abs() < 0.1 && (st - 1.0).abs() < 0.1, "test {mt} {st}");
    // A black pixel maps to −mean/std.
    assert!((norm.value(0, 0.0) + norm.mean[0] / norm.std[0]).abs() < 1e-6);
    // f64 the same.
    let mut d64 = load_digits::<f64>().unwrap();
    let n64 = Normalization::fit(&d64).unwrap();
    n64.apply(&mut d64).unwrap();
    let n = d64.images().len() as f64;
    let m = d64.images().iter().sum::<f64>() / n;
    let v = d64.images().iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    assert!(m.abs() < 1e-12 && (v.sqrt() - 1.0).abs() < 1e-12);
    // A constant set cannot be standardised.
    let flat = ImageDataset::new(vec![1.0f32; 8], vec![0, 1], [1, 2, 2], 2, 1.0).unwrap();
    assert!(Normalization::fit(&flat).is_err());
}

#[test]
fn shift_moves_pixels_and_pads() {
    // One 2-channel 3×3 image with distinct values.
    let img: Vec<f32> = (1..=18).map(|v| v as f32).collect();
    let mut out = vec![0.0f32; 18];
    shift_image(&img, [2, 3, 3], 1, -1, &[-1.0, -2.0], &mut out).unwrap();
    #[rustfmt::skip]
    let want = [
        -1.0, -1.0, -1.0,   2.0, 3.0, -1.0,   5.0, 6.0, -1.0,
        -2.0, -2.0, -2.0,  11.0, 12.0, -2.0,  14.0, 15.0, -2.0,
    ];
    assert_eq!(out, want);
    shift_image(&img, [2, 3, 3], 0, 0, &[], &mut out).unwrap();
    assert_eq!(out, img);
    assert!(shift_image(&img, [2, 3, 2], 0, 0, &[], &mut out).is_err());
    assert!(shift_image(&img, [2, 3, 3], 0, 0, &[0.0], &mut out).is_err());
}

#[test]
fn augmentation_keeps_shape_and_labels_and_moves_pixels() {
    let ds = load_digits::<f32>().unwrap();
    let opts = BatchOptions {
        batch_size: 100,
        shuffle: false,
        drop_last: false,
        seed: 5,
    };
    let plain = ds.clone().into_loader(opts).unwrap();
    let aug = ds
        .clone()
        .into_loader(opts)
        .unwrap()
        .with_augmentation(RandomShift::new(2));
    let (mut moved, mut total) = (0, 0);
    for (p, a) in plain.batches(0).zip(aug.batches(0)) {
        assert_eq!(p.shape, a.shape);
        assert_eq!(p.labels, a.labels);
        for k in 0..p.len() {
            let orig = &p.images[k * 64..(k + 1) * 64];
            let got = &a.images[k * 64..(k + 1) * 64];
            total += 1;
            if orig != got {
                moved += 1;
            }
            // Each augmented image is the original shifted by some |dy|, |dx| ≤ 2.
            let mut buf = [0.0f32; 64];
            let found = (-2..=2).any(|dy| {
                (-2..=2).any(|dx| {
                    shift_image(orig, [1, 8, 8], dy, dx, &[], &mut buf).unwrap();
                    buf == got
                })
            });
            assert!(found, "image {k} is not a shift of its original");
        }
    }
    assert_eq!(total, 1797);
    // 24 of the 25 shifts move the image; almost every image must change.
    assert!(
        moved > total * 4 / 5,
        "only {moved} of {total} images moved"
    );
    // Reproducible: the same epoch gives the same augmented batches.
    assert!(aug.batches(3).eq(aug.batches(3)));
}

#[test]
fn loader_shuffles_per_epoch_and_keeps_or_drops_the_last_batch() {
    // Images that carry their index as the pixel value.
    let n = 103;
    let images: Vec<f64> = (0..n).flat_map(|i| [i as f64; 4]).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let ds = ImageDataset::new(images, labels, [1, 2, 2], 3, 255.0).unwrap();
    let keep = ds.clone().into_loader(BatchOptions::new(10)).unwrap();
    assert_eq!(keep.n_batches(), 11);
    assert_eq!(keep.n_examples(), n);
    let order = |epoch| -> Vec<usize> {
        let mut seen = Vec::new();
        for b in keep.batches(epoch) {
            assert_eq!(b.shape[1..], [1, 2, 2]);
            for k in 0..b.len() {
                let i = b.images[4 * k] as usize;
                assert!(b.images[4 * k..4 * k + 4].iter().all(|&v| v == i as f64));
                assert_eq!(b.labels[k], i % 3);
                seen.push(i);
            }
        }
        seen
    };
    let e0 = order(0);
    let sizes: Vec<usize> = keep.batches(0).map(|b| b.len()).collect();
    assert_eq!(sizes, [vec![10; 10], vec![3]].concat());
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>()); // every image once
    assert_ne!(e0, (0..n).collect::<Vec<_>>()); // shuffled
    assert_eq!(order(0), e0); // reproducible
    assert_ne!(order(1), e0); // another epoch, another order
    let drop = ds
        .clone()
        .into_loader(BatchOptions {
            drop_last: true,
            ..BatchOptions::new(10)
        })
        .unwrap();
    assert_eq!(drop.n_batches(), 10);
    assert_eq!(drop.batches(0).len(), 10);
    assert!(drop.batches(0).all(|b| b.len() == 10));
    // Another seed, another order.
    let other = ds
        .clone()
        .into_loader(BatchOptions {
            seed: 1,
            ..BatchOptions::new(10)
        })
        .unwrap();
    assert!(!other.batches(0).eq(keep.batches(0)));
    assert!(ds.into_loader(BatchOptions::new(0)).is_err());
}

fn check_round_trip(ds: &ImageDataset<f32>, dir: &Path, gzip: bool) {
    let ext = if gzip { ".gz" } else { "" };
    let imgs = dir.join(format!("train-images-idx3-ubyte{ext}"));
    let labs = dir.join(format!("train-labels-idx1-ubyte{ext}"));
    write_idx_dataset(ds, &imgs, &labs, gzip).unwrap();
    let raw = std::fs::read(&imgs).unwrap();
    if gzip {
        assert_eq!(raw[..2], [0x1f, 0x8b]);
    } else {
        assert_eq!(raw[..4], [0, 0, 8, 3]);
        assert_eq!(raw[4..8], 5000u32.to_be_bytes());
        assert_eq!(raw[8..16], [0, 0, 0, 28, 0, 0, 0, 28]);
        assert_eq!(raw.len(), 16 + 5000 * 784);
        let lab = std::fs::read(&labs).unwrap();
        assert_eq!(lab[..8], [0, 0, 8, 1, 0, 0, 0x13, 0x88]);
        assert_eq!(lab.len(), 8 + 5000);
    }
    let back = read_idx_dataset::<f32>(&imgs, &labs).unwrap();
    assert_eq!(&back, ds);
    let arr = IdxArray::read(&labs).unwrap();
    assert_eq!(arr.dims(), [5000]);
    assert_eq!(arr.magic(), 0x0000_0801);
}

#[test]
fn idx_round_trip_of_the_mnist_subset() {
    let ds = load_mnist_5k::<f32>().unwrap();
    let dir = temp_dir("idx");
    check_round_trip(&ds, &dir, false);
    check_round_trip(&ds, &dir, true);
    // Scaled pixels are not bytes.
    let mut unit = ds.clone();
    unit.to_unit_range();
    assert!(matches!(
        write_idx_dataset(&unit, &dir.join("a"), &dir.join("b"), false),
        Err(ModelsError::InvalidArgument { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The error of parsing `bytes` as IDX, as text; panics if parsing succeeds.
fn idx_error(bytes: &[u8]) -> String {
    match IdxArray::parse(bytes, Path::new("bad.idx")) {
        Err(e @ ModelsError::BinaryData { .. }) => e.to_string(),
        other => panic!("expected a BinaryData error, got {other:?}"),
    }
}

#[test]
fn malformed_idx_files_are_errors() {
    assert!(idx_error(&[0, 0]).contains("too short"));
    assert!(idx_error(&[1, 2, 8, 1, 0, 0, 0, 1, 7]).contains("two zero bytes"));
    assert!(idx_error(&[0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]).contains("not supported"));
    assert!(idx_error(&[0, 0, 8, 0]).contains("0 dimensions"));
    assert!(idx_error(&[0, 0, 8, 3, 0, 0, 0, 2, 0, 0]).contains("header is truncated"));
    assert!(idx_error(&[0, 0, 8, 1, 0, 0, 0, 0]).contains("dimension 0 is 0"));
    let e = idx_error(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2]);
    assert!(
        e.starts_with("bad.idx: byte 10: the data is truncated"),
        "{e}"
    );
    assert!(idx_error(&[0, 0, 8, 1, 0, 0, 0, 1, 1, 2]).contains("longer than"));
    assert_eq!(
        IdxArray::parse(&[0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 2, 7, 9], Path::new("x"))
            .unwrap()
            .into_parts(),
        (vec![1, 2], vec![7, 9])
    );

    let dir = temp_dir("bad-idx");
    // A corrupt gzip stream.
    let gz = dir.join("corrupt.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff]).unwrap();
    assert!(matches!(
        IdxArray::read(&gz),
        Err(ModelsError::BinaryData { .. })
    ));
    // Labels that do not match the images.
    let imgs = dir.join("imgs");
    let labs = dir.join("labs");
    IdxArray::new(vec![2, 2, 2], vec![0; 8])
        .unwrap()
        .write(&imgs, false)
        .unwrap();
    IdxArray::new(vec![3], vec![0, 1, 2])
        .unwrap()
        .write(&labs, true)
        .unwrap();
    let e = read_idx_dataset::<f32>(&imgs, &labs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 labels for the 2 images"), "{e}");
    // Images given as labels.
    assert!(read_idx_dataset::<f32>(&imgs, &imgs).is_err());
    // A missing file.
    assert!(matches!(
        read_idx_dataset::<f32>(&dir.join("none"), &labs),
        Err(ModelsError::Io { .. })
    ));
    assert!(IdxArray::new(vec![2, 2], vec![0; 3]).is_err());
    assert!(IdxArray::new(vec![], vec![]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

const TINY: CsvImageFormat = CsvImageFormat {
    channels: 1,
    height: 2,
    width: 2,
    pixel_max: 16,
    n_classes: 3,
    label_first: false,
    header: false,
};

fn csv_error(text: &str, format: &CsvImageFormat) -> String {
    match parse_csv_images::<f32>(text, Path::new("bad.csv"), format) {
        Err(e @ ModelsError::Data { .. }) => e.to_string(),
        other => panic!("expected a Data error, got {other:?}"),
    }
}

#[test]
fn malformed_csv_files_are_errors() {
    let ok = parse_csv_images::<f32>("0,1,2,3,2\n\n16,0,0,0,0\n", Path::new("ok"), &TINY).unwrap();
    assert_eq!(ok.shape(), [2, 1, 2, 2]);
    assert_eq!(ok.labels(), [2, 0]);
    let first = CsvImageFormat {
        label_first: true,
        header: true,
        ..TINY
    };
    let ok =
        parse_csv_images::<f32>("label,a,b,c,d\n1,4,3,2,1\n", Path::new("ok"), &first).unwrap();
    assert_eq!(
        (ok.labels(), ok.images()),
        (&[1][..], &[4.0, 3.0, 2.0, 1.0][..])
    );

    let e = csv_error("0,1,2,3,0\n0,1,2,0\n", &TINY);
    assert_eq!(
        e,
        "bad.csv:2:5: expected 5 fields (4 pixels and a label), found 4"
    );
    let e = csv_error("0,1,2,3,0,9\n", &TINY);
    assert!(e.starts_with("bad.csv:1:6: expected 5 fields"), "{e}");
    let e = csv_error("0,1,x,3,0\n", &TINY);
    assert_eq!(
        e,
        "bad.csv:1:3: \"x\" is not a non-negative integer (this format has no header line)"
    );
    assert!(csv_error("0,-1,2,3,0\n", &TINY).starts_with("bad.csv:1:2:"));
    assert_eq!(
        csv_error("0,1,17,3,0\n", &TINY),
        "bad.csv:1:3: pixel value 17 exceeds the maximum 16"
    );
    assert_eq!(
        csv_error("0,1,2,3,0\n0,1,2,3,3\n", &TINY),
        "bad.csv:2:5: label 3 is not below 3"
    );
    assert!(csv_error("", &TINY).contains("no images"));
    assert!(csv_error("a,b,c,d,e\n", &first).contains("no images"));

    // Through a file: a truncated copy of the shipped MNIST subset names its last line.
    let dir = temp_dir("bad-csv");
    let text = "0,".repeat(784) + "7\n" + &"0,".repeat(100);
    let path = dir.join("short.csv");
    std::fs::write(&path, text).unwrap();
    let e = read_csv_images::<f32>(&path, &models::datasets::MNIST_5K_FORMAT).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:2:", path.display())),
        "{e}"
    );
    // Not a digits file.
    let e = load_digits_from::<f32>(&mnist_5k_path()).unwrap_err();
    assert!(e.to_string().contains(":1:66: expected 65 fields"), "{e}");
    assert!(matches!(
        load_digits_from::<f32>(&dir.join("missing.csv")),
        Err(ModelsError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dataset_constructor_checks_its_parts() {
    let ok = ImageDataset::new(vec![0.0f32; 8], vec![0, 1], [2, 2, 1], 2, 1.0).unwrap();
    assert_eq!((ok.len(), ok.image_len(), ok.channels()), (2, 4, 2));
    assert_eq!(ok.image(1).map(<[f32]>::len), Some(4));
    assert!(ok.image(2).is_none());
    assert!(ok.subset(&[1, 0, 1]).unwrap().labels() == [1, 0, 1]);
    assert!(ok.subset(&[2]).is_err());
    assert_eq!(
        ok.clone().with_n_classes(5).unwrap().class_counts(),
        [1, 1, 0, 0, 0]
    );
    assert!(ok.with_n_classes(1).is_err());
    let bad = [
        ImageDataset::new(vec![0.0f32; 7], vec![0, 1], [2, 2, 1], 2, 1.0),
        ImageDataset::new(vec![0.0f32; 8], vec![0, 2], [2, 2, 1], 2, 1.0),
        ImageDataset::new(vec![0.0f32; 8], vec![0, 1], [0, 2, 1], 2, 1.0),
        ImageDataset::new(vec![f32::NAN; 8], vec![0, 1], [2, 2, 1], 2, 1.0),
        ImageDataset::new(vec![0.0f32; 8], vec![0, 1], [2, 2, 1], 2, 0.0),
        ImageDataset::new(vec![0.0f32; 8], vec![0, 1], [2, 2, 1], 0, 1.0),
    ];
    for b in bad {
        assert!(matches!(b, Err(ModelsError::InvalidArgument { .. })));
    }
}
