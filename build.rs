// Gives the shared library a SONAME so that installed copies can be versioned
// (libsesscache.so -> libsesscache.so.0 -> libsesscache.so.0.1.0).
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsesscache.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
