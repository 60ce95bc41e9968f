//! The `mindory-desktop` binary: starts the Tauri app defined in the library.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
fn main() {
    mindory_desktop::run()
}
