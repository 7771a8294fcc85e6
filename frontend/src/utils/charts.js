// Turn the lists from GET /api/admin/charts into ECharts options. Each list holds
// small dicts such as {"rating": 4, "count": 34174} or {"tag": "Drama", "count": 725};
// the label and value keys are found by name so that one helper serves them all.

import { t } from '@/i18n'
import { tagName } from '@/utils/format'

const LABEL_KEYS = ['label', 'rating', 'tag', 'title', 'date', 'day', 'name']
const VALUE_KEYS = ['count', 'value', 'clicks', 'click_count', 'movies', 'n', 'total']

/** Split a list of dicts into parallel label and value arrays. */
export function toSeries(rows) {
  const labels = []
  const values = []
  for (const row of rows || []) {
    if (!row || typeof row !== 'object') continue
    const labelKey = LABEL_KEYS.find((key) => key in row)
    const valueKey = VALUE_KEYS.find((key) => key in row && typeof row[key] === 'number')
    if (labelKey === undefined || valueKey === undefined) continue
    labels.push(row[labelKey])
    values.push(row[valueKey])
  }
  return { labels, values }
}

function barOption(title, labels, values, { horizontal = false, color = '#409eff' } = {}) {
  const category = { type: 'category', data: labels, axisLabel: { interval: 0 } }
  const value = { type: 'value' }
  return {
    title: { text: title, left: 'center', textStyle: { fontSize: 14 } },
    tooltip: { trigger: 'axis' },
    grid: { left: horizontal ? 150 : 50, right: 20, top: 40, bottom: horizontal ? 20 : 60 },
    xAxis: horizontal ? value : { ...category, axisLabel: { interval: 0, rotate: labels.length > 8 ? 40 : 0 } },
    yAxis: horizontal ? { ...category, inverse: true } : value,
    series: [{ type: 'bar', data: values, itemStyle: { color }, barMaxWidth: 36 }],
  }
}

/** Build the dashboard's chart options, keyed like the API's answer. */
export function buildChartOptions(charts) {
  const data = charts || {}
  const options = {}
  if (data.ratings_histogram) {
    const { labels, values } = toSeries(data.ratings_histogram)
    options.ratings_histogram = barOption(t('评分分布'), labels.map((r) => t('{n} 星', { n: r })), values, {
      color: '#f7ba2a',
    })
  }
  if (data.movies_per_tag) {
    const { labels, values } = toSeries(data.movies_per_tag)
    options.movies_per_tag = barOption(t('各类型电影数量'), labels.map(tagName), values)
  }
  if (data.clicks_per_tag) {
    const { labels, values } = toSeries(data.clicks_per_tag)
    options.clicks_per_tag = {
      title: { text: t('各类型浏览量'), left: 'center', textStyle: { fontSize: 14 } },
      tooltip: { trigger: 'item' },
      series: [
        {
          type: 'pie',
          radius: ['35%', '65%'],
          top: 30,
          // Tags nobody has clicked yet would only crowd the labels.
          data: labels
            .map((label, i) => ({ name: tagName(label), value: values[i] }))
            .filter((item) => item.value > 0),
        },
      ],
    }
  }
  if (data.top_clicked) {
    const rows = (data.top_clicked || []).filter((row) => row.click_count !== 0)
    const { labels, values } = toSeries(rows)
    options.top_clicked = barOption(t('浏览最多的 10 部电影'), labels, values, {
      horizontal: true,
      color: '#67c23a',
    })
  }
  if (data.registrations) {
    const { labels, values } = toSeries(data.registrations)
    options.registrations = {
      title: { text: t('近 30 天注册用户'), left: 'center', textStyle: { fontSize: 14 } },
      tooltip: { trigger: 'axis' },
      grid: { left: 40, right: 20, top: 40, bottom: 40 },
      xAxis: { type: 'category', data: labels },
      yAxis: { type: 'value', minInterval: 1 },
      series: [{ type: 'line', data: values, smooth: true, areaStyle: {}, itemStyle: { color: '#8e6bd8' } }],
    }
  }
  return options
}
