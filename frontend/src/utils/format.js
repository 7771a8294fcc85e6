// Display helpers shared by the views.

import { locale, t } from '@/i18n'

const TAG_NAMES = {
  unknown: '未知',
  Action: '动作',
  Adventure: '冒险',
  Animation: '动画',
  "Children's": '儿童',
  Comedy: '喜剧',
  Crime: '犯罪',
  Documentary: '纪录片',
  Drama: '剧情',
  Fantasy: '奇幻',
  'Film-Noir': '黑色电影',
  Horror: '恐怖',
  Musical: '歌舞',
  Mystery: '悬疑',
  Romance: '爱情',
  'Sci-Fi': '科幻',
  Thriller: '惊悚',
  War: '战争',
  Western: '西部',
}

/** Return the Chinese name of a MovieLens genre tag (the tag itself when unknown). */
export function tagName(tag) {
  if (locale.value === 'en') return tag
  return TAG_NAMES[tag] || tag
}

/** Format a 1-5 mean score, or a dash while nobody has rated the film. */
export function formatScore(score) {
  if (score === null || score === undefined || Number.isNaN(Number(score))) return t('暂无评分')
  return Number(score).toFixed(1)
}

/** Format a metric that may be missing (no model pack loaded yet). */
export function formatMetric(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—'
  return Number(value).toFixed(digits)
}

/** Format an ISO date-time from the API as local "YYYY-MM-DD HH:mm". */
export function formatDateTime(value) {
  if (!value) return '—'
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) return String(value)
  const pad = (n) => String(n).padStart(2, '0')
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  )
}

/** Format a large count with thousands separators. */
export function formatCount(value) {
  if (value === null || value === undefined) return '—'
  return Number(value).toLocaleString('zh-CN')
}
