//! Build script: Tauri's code generation (config, icons, capabilities).
fn main() {
    tauri_build::build()
}
