// Builds the console into the Python package (src/aiproxy/web/static), which the relay serves at /.
// The output is committed so that `make run` needs no Node.js; CI rebuilds it and compares.
import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

export default defineConfig({
  plugins: [vue()],
  base: '/',
  resolve: { alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) } },
  build: {
    outDir: fileURLToPath(new URL('../src/aiproxy/web/static', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      output: {
        // Libraries in their own chunks: a change to a page does not rename the big files.
        manualChunks(id) {
          if (id.includes('node_modules/echarts') || id.includes('node_modules/zrender')) return 'charts'
          if (id.includes('node_modules/element-plus') || id.includes('node_modules/@element-plus')) return 'ui'
          if (id.includes('node_modules/')) return 'vendor'
        },
      },
    },
  },
  server: {
    // `npm run dev` against a relay on :8080
    proxy: { '/api': 'http://127.0.0.1:8080', '/health': 'http://127.0.0.1:8080' },
  },
})
