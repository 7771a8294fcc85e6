import { describe, expect, it } from 'vitest'
import { createApp } from 'vue'

import ElementPlusParts from '@/plugins/element'

// Every template of the app, as text.
const sources = import.meta.glob('/src/**/*.vue', { query: '?raw', import: 'default', eager: true })

function pascal(tag) {
  return tag.replace(/(^|-)([a-z])/g, (_, __, letter) => letter.toUpperCase())
}

describe('Element Plus registration', () => {
  it('registers every <el-*> component the templates use', () => {
    const app = createApp({})
    app.use(ElementPlusParts)
    const used = new Set()
    for (const text of Object.values(sources)) {
      for (const match of text.matchAll(/<(el-[a-z-]+)/g)) used.add(pascal(match[1]))
    }

    const missing = [...used].filter((name) => !app.component(name))

    expect(used.size).toBeGreaterThan(20)
    expect(used.has('ElRadioButton')).toBe(true)
    expect(missing).toEqual([])
  })

  it('registers the v-loading directive', () => {
    const app = createApp({})
    app.use(ElementPlusParts)
    expect(app.directive('loading')).toBeTruthy()
  })
})
