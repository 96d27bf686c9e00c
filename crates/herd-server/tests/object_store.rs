//! Placeholder while the S3 tests are written.
#[test]
fn builds() {
    let _ = s3s_fs::FileSystem::new(std::env::temp_dir());
}
