import { afterEach, describe, expect, it } from 'vitest'

import { locale, setLocale, t } from '@/i18n'
import EN from '@/locales/en'
import { buildChartOptions } from '@/utils/charts'
import { formatScore, tagName } from '@/utils/format'
import { checkUsername } from '@/utils/validation'

const sources = import.meta.glob('/src/**/*.{vue,js}', { query: '?raw', import: 'default', eager: true })

afterEach(() => setLocale('zh'))

describe('i18n', () => {
  it('shows Chinese by default and English after the switch', () => {
    expect(locale.value).toBe('zh')
    expect(t('浏览电影')).toBe('浏览电影')

    setLocale('en')

    expect(t('浏览电影')).toBe('Browse')
    expect(localStorage.getItem('locale')).toBe('en')
    expect(document.documentElement.lang).toBe('en')
  })

  it('fills placeholders in either language', () => {
    expect(t('为你推荐 · {name}', { name: 'alice' })).toBe('为你推荐 · alice')
    setLocale('en')
    expect(t('为你推荐 · {name}', { name: 'alice' })).toBe('Recommended for alice')
  })

  it('falls back to the Chinese text when a translation is missing', () => {
    setLocale('en')
    expect(t('一段没有翻译的文字')).toBe('一段没有翻译的文字')
  })

  it('switches genres, scores, chart titles and form messages', () => {
    setLocale('en')
    expect(tagName('Sci-Fi')).toBe('Sci-Fi')
    expect(formatScore(null)).toBe('Not rated')
    expect(checkUsername('')).toBe('Enter a username')
    const options = buildChartOptions({ ratings_histogram: [{ rating: 5, count: 1 }] })
    expect(options.ratings_histogram.title.text).toBe('Ratings')
    expect(options.ratings_histogram.xAxis.data).toEqual(['5 stars'])
  })

  it('has an English text for every literal passed to t()', () => {
    const keys = new Set()
    for (const text of Object.values(sources)) {
      for (const match of text.matchAll(/\bt\(\s*'([^']+)'/g)) keys.add(match[1])
    }
    keys.delete('一段没有翻译的文字')

    const missing = [...keys].filter((key) => !(key in EN))

    expect(keys.size).toBeGreaterThan(150)
    expect(missing).toEqual([])
  })
})
