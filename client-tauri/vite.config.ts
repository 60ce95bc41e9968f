// Vite builds the webview into dist/, which tauri.conf.json ships. Nothing is
// fetched at run time: every script, style and font is bundled from here.
import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

export default defineConfig({
  plugins: [preact()],
  clearScreen: false,
  build: { target: "safari15", outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 800 },
});
