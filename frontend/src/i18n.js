// A light interface-language switch: Simplified Chinese (the default) or English.
// The Chinese text is the key, so a missing translation falls back to Chinese.
// Messages that come from the server (errors, recommendation reasons, the chat)
// stay in Chinese.

import { ref } from 'vue'

import EN from './locales/en'

function savedLocale() {
  try {
    return globalThis.localStorage?.getItem('locale') === 'en' ? 'en' : 'zh'
  } catch {
    return 'zh'
  }
}

export const locale = ref(savedLocale())

export function setLocale(value) {
  locale.value = value === 'en' ? 'en' : 'zh'
  try {
    globalThis.localStorage?.setItem('locale', locale.value)
  } catch {
    // private mode: the choice lasts for this page only
  }
  if (typeof document !== 'undefined') {
    document.documentElement.lang = locale.value === 'en' ? 'en' : 'zh-CN'
  }
}

/** Translate a Chinese interface text; `{name}` placeholders take `params`. */
export function t(text, params) {
  let out = locale.value === 'en' ? (EN[text] ?? text) : text
  if (params) out = out.replace(/\{(\w+)\}/g, (_, key) => String(params[key] ?? ''))
  return out
}
