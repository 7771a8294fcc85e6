import { describe, expect, it } from 'vitest'

import { buildChartOptions, toSeries } from '@/utils/charts'
import { formatCount, formatMetric, formatScore, tagName } from '@/utils/format'
import { checkPassword, checkUsername, movieBody } from '@/utils/validation'

// The shape GET /api/admin/charts answers with (api/admin.py).
const CHARTS = {
  ratings_histogram: [1, 2, 3, 4, 5].map((rating, i) => ({ rating, count: [6110, 11370, 27145, 34174, 21201][i] })),
  movies_per_tag: [
    { tag: 'Drama', count: 725 },
    { tag: 'Comedy', count: 505 },
  ],
  clicks_per_tag: [
    { tag: 'Animation', clicks: 7 },
    { tag: 'Western', clicks: 0 },
  ],
  top_clicked: [
    { id: 1, title: 'Toy Story (1995)', click_count: 7 },
    { id: 2, title: 'GoldenEye (1995)', click_count: 0 },
  ],
  registrations: [
    { date: '2026-12-02', count: 0 },
    { date: '2026-12-03', count: 3 },
  ],
}

describe('charts', () => {
  it('finds the label and value keys of each list', () => {
    expect(toSeries(CHARTS.clicks_per_tag)).toEqual({ labels: ['Animation', 'Western'], values: [7, 0] })
    expect(toSeries(CHARTS.top_clicked)).toEqual({
      labels: ['Toy Story (1995)', 'GoldenEye (1995)'],
      values: [7, 0],
    })
    expect(toSeries([{ other: 1 }, null])).toEqual({ labels: [], values: [] })
  })

  it('builds one option per chart with Chinese labels', () => {
    const options = buildChartOptions(CHARTS)

    expect(Object.keys(options)).toEqual([
      'ratings_histogram',
      'movies_per_tag',
      'clicks_per_tag',
      'top_clicked',
      'registrations',
    ])
    expect(options.ratings_histogram.xAxis.data).toEqual(['1 星', '2 星', '3 星', '4 星', '5 星'])
    expect(options.ratings_histogram.series[0].data).toEqual([6110, 11370, 27145, 34174, 21201])
    expect(options.movies_per_tag.xAxis.data).toEqual(['剧情', '喜剧'])
    expect(options.registrations.series[0].data).toEqual([0, 3])
  })

  it('leaves films and tags nobody clicked out of the click charts', () => {
    const options = buildChartOptions(CHARTS)

    expect(options.clicks_per_tag.series[0].data).toEqual([{ name: '动画', value: 7 }])
    expect(options.top_clicked.yAxis.data).toEqual(['Toy Story (1995)'])
  })

  it('builds nothing from an empty answer', () => {
    expect(buildChartOptions(null)).toEqual({})
  })
})

describe('format', () => {
  it('formats scores, metrics and counts', () => {
    expect(formatScore(3.87)).toBe('3.9')
    expect(formatScore(null)).toBe('暂无评分')
    expect(formatMetric(0.91954)).toBe('0.920')
    expect(formatMetric(null)).toBe('—')
    expect(formatCount(100000)).toBe('100,000')
  })

  it('names genres in Chinese and keeps other tags', () => {
    expect(tagName('Sci-Fi')).toBe('科幻')
    expect(tagName("Children's")).toBe('儿童')
    expect(tagName('Wuxia')).toBe('Wuxia')
  })
})

describe('validation', () => {
  it('checks usernames like the API does', () => {
    expect(checkUsername('alice_01')).toBe('')
    expect(checkUsername('影迷小王')).toBe('')
    expect(checkUsername('ab')).toBe('用户名为 3-32 位字母、数字、下划线或汉字')
    expect(checkUsername('bad name')).toBe('用户名为 3-32 位字母、数字、下划线或汉字')
    expect(checkUsername('')).toBe('请输入用户名')
  })

  it('checks password length', () => {
    expect(checkPassword('12345678')).toBe('')
    expect(checkPassword('1234567')).toBe('密码长度为 8-128 位')
    expect(checkPassword('x'.repeat(129))).toBe('密码长度为 8-128 位')
  })

  it('sends only writable film fields, blanks as null', () => {
    const body = movieBody({
      title: '  Heat (1995) ',
      tags: ['Action'],
      director: 'Michael Mann',
      actors: ' ',
      summary: '',
      release_date: '1995-12-15',
      imdb_url: '',
      poster_url: 'https://example.org/heat.jpg',
      score: 5,
      click_count: 99,
    })

    expect(body).toEqual({
      title: 'Heat (1995)',
      tags: ['Action'],
      director: 'Michael Mann',
      actors: null,
      summary: null,
      release_date: '1995-12-15',
      imdb_url: null,
      poster_url: 'https://example.org/heat.jpg',
    })
  })
})
