import { fileURLToPath, URL } from 'node:url'

import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vite'

// `npm run dev` proxies the API and the posters to Flask, so no CORS is needed.
const backend = process.env.FLASK_URL || 'http://127.0.0.1:5000'

export default defineConfig({
  plugins: [vue()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  server: {
    port: 5173,
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/posters': { target: backend, changeOrigin: false },
    },
  },
  build: {
    chunkSizeWarningLimit: 1500,
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.spec.js'],
    css: false,
    // Let Vite transform Element Plus: in plain Node its default import of the
    // CommonJS async-validator is not the class, so form validation breaks.
    server: { deps: { inline: ['element-plus'] } },
  },
})
