import { flushPromises } from '@vue/test-utils'
import { afterEach, describe, expect, it, vi } from 'vitest'

import AdminClients from '@/views/admin/AdminClients.vue'
import AdminDashboard from '@/views/admin/AdminDashboard.vue'
import AdminMovies from '@/views/admin/AdminMovies.vue'

import { film, jsonResponse, mockFetch, mountWithApp } from './helpers'

// ECharts needs a real canvas; the dashboard test only checks what it is given.
vi.mock('@/components/EChart.vue', () => ({
  default: {
    name: 'EChart',
    props: ['option', 'height'],
    template: '<div data-testid="chart" :data-title="option.title && option.title.text"></div>',
  },
}))

afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
  document.body.innerHTML = ''
})

const ADMIN = { 'GET /api/auth/me': [200, { role: 'admin', user: { id: 1, username: 'root' } }] }
const STATS = {
  movie_count: 1682,
  client_count: 3,
  dataset_user_count: 943,
  total_clicks: 12,
  rating_count: 100004,
  model_loaded: true,
  rmse: 0.91954,
  mae: 0.72,
  within_one_star: 0.74,
  precision_at_10: 0.1337,
  ndcg_at_10: 0.1978,
  coverage: 0.3,
  eval_date: '2026-12-03T16:58:00Z',
}
const CHARTS = {
  ratings_histogram: [1, 2, 3, 4, 5].map((rating) => ({ rating, count: rating * 10 })),
  movies_per_tag: [{ tag: 'Drama', count: 725 }],
  clicks_per_tag: [{ tag: 'Drama', clicks: 3 }],
  top_clicked: [{ id: 1, title: 'Toy Story (1995)', click_count: 3 }],
  registrations: [{ date: '2026-12-03', count: 1 }],
}
const IDLE = { state: 'idle', progress: null, message: null, last_error: null }

function confirmDialog() {
  return document.querySelector('.el-message-box')
}

async function acceptConfirm() {
  await vi.waitFor(() => expect(confirmDialog()).not.toBeNull())
  confirmDialog().querySelector('.el-message-box__btns .el-button--primary').click()
  await flushPromises()
}

describe('AdminDashboard', () => {
  it('shows the stat cards and one chart per list', async () => {
    mockFetch({
      ...ADMIN,
      'GET /api/admin/stats': [200, STATS],
      'GET /api/admin/charts': [200, CHARTS],
      'GET /api/admin/model': [200, IDLE],
    })

    const { wrapper } = await mountWithApp(AdminDashboard, { path: '/admin' })

    const card = (key) => wrapper.get(`[data-testid="stat-${key}"] .stat-value`).text()
    expect(card('movie_count')).toBe('1,682')
    expect(card('client_count')).toBe('3')
    expect(card('rating_count')).toBe('100,004')
    expect(card('rmse')).toBe('0.920')
    expect(card('precision_at_10')).toBe('0.134')
    expect(card('ndcg_at_10')).toBe('0.198')
    expect(card('eval_date')).toMatch(/^2026-12-0[34] \d\d:\d\d$/)
    const titles = wrapper.findAll('[data-testid="chart"]').map((c) => c.attributes('data-title'))
    expect(titles).toEqual(['评分分布', '各类型电影数量', '各类型浏览量', '浏览最多的 10 部电影', '近 30 天注册用户'])
  })

  it('shows dashes for the metrics while no model is loaded', async () => {
    const empty = { ...STATS, model_loaded: false, rmse: null, precision_at_10: null, ndcg_at_10: null, eval_date: null }
    mockFetch({
      ...ADMIN,
      'GET /api/admin/stats': [200, empty],
      'GET /api/admin/charts': [200, CHARTS],
      'GET /api/admin/model': [200, IDLE],
    })

    const { wrapper } = await mountWithApp(AdminDashboard, { path: '/admin' })

    expect(wrapper.get('[data-testid="stat-rmse"] .stat-value').text()).toBe('—')
    expect(wrapper.get('[data-testid="stat-eval_date"] .stat-value').text()).toBe('—')
    expect(wrapper.get('[data-testid="model-state"]').text()).toContain('尚未加载模型')
  })

  it('shows the error when the stats cannot be loaded', async () => {
    mockFetch({
      ...ADMIN,
      'GET /api/admin/stats': [503, { error: { code: 'database_unavailable', message: '数据库暂时不可用,请稍后再试' } }],
      'GET /api/admin/charts': [200, CHARTS],
      'GET /api/admin/model': [200, IDLE],
    })

    const { wrapper } = await mountWithApp(AdminDashboard, { path: '/admin' })

    expect(wrapper.get('[data-testid="stats-error"]').text()).toContain('数据库暂时不可用,请稍后再试')
  })

  it('starts training and follows its progress until it is done', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    const states = [
      { state: 'running', progress: 0.25, message: 'fit' },
      { state: 'done', progress: 1.0, message: 'done' },
    ]
    let trained = false
    const calls = mockFetch({
      ...ADMIN,
      'GET /api/admin/stats': [200, STATS],
      'GET /api/admin/charts': [200, CHARTS],
      'GET /api/admin/model': () => jsonResponse(200, trained ? states.shift() || states[0] || IDLE : IDLE),
      'POST /api/admin/model/train': () => {
        trained = true
        return jsonResponse(202, { state: 'running', progress: 0 })
      },
    })
    const { wrapper } = await mountWithApp(AdminDashboard, { path: '/admin' })

    await wrapper.get('[data-testid="train"]').trigger('click')
    await flushPromises()

    expect(calls.filter((c) => c.method === 'POST').map((c) => c.url)).toEqual(['/api/admin/model/train'])
    expect(wrapper.get('[data-testid="train"]').text()).toBe('训练中…')
    expect(wrapper.get('.el-progress').text()).toContain('25%')

    await vi.advanceTimersByTimeAsync(1600)
    await flushPromises()

    expect(wrapper.get('[data-testid="model-state"]').text()).toContain('已完成')
    expect(wrapper.get('[data-testid="train"]').text()).toBe('重新训练模型')
  })
})

describe('AdminClients', () => {
  const ROWS = [
    { id: 944, username: 'alice', source: 'registered', created_at: '2026-12-03T10:00:00Z', last_login_at: null, is_active: true, rating_count: 2, footprint_count: 5 },
  ]

  it('lists registered clients by default', async () => {
    const calls = mockFetch({ ...ADMIN, 'GET /api/admin/clients': [200, { items: ROWS, total: 1, page: 1, per_page: 20 }] })

    const { wrapper } = await mountWithApp(AdminClients, { path: '/admin/clients' })

    expect(calls.find((c) => c.url.startsWith('/api/admin/clients')).url).toBe(
      '/api/admin/clients?source=registered&page=1&per_page=20',
    )
    expect(wrapper.get('[data-testid="clients-table"]').text()).toContain('alice')
    expect(wrapper.get('[data-testid="clients-table"]').text()).toContain('正常')
  })

  it('shows the temporary password once after a confirmed reset', async () => {
    const calls = mockFetch({
      ...ADMIN,
      'GET /api/admin/clients': [200, { items: ROWS, total: 1 }],
      'POST /api/admin/clients/944/reset-password': [200, { id: 944, username: 'alice', temporary_password: 'Tmp-9x7Q2w' }],
    })
    const { wrapper } = await mountWithApp(AdminClients, { path: '/admin/clients' })

    const reset = wrapper.findAll('button').find((b) => b.text() === '重置密码')
    await reset.trigger('click')
    expect(calls.some((c) => c.method === 'POST')).toBe(false) // not before confirming
    await acceptConfirm()

    await vi.waitFor(() => expect(document.querySelector('[data-testid="temporary-password"]')).not.toBeNull())
    expect(document.querySelector('[data-testid="temporary-password"]').value).toBe('Tmp-9x7Q2w')
  })

  it('disables a client after confirmation', async () => {
    const calls = mockFetch({
      ...ADMIN,
      'GET /api/admin/clients': [200, { items: ROWS.map((r) => ({ ...r })), total: 1 }],
      'PATCH /api/admin/clients/944': [200, { ...ROWS[0], is_active: false }],
    })
    const { wrapper } = await mountWithApp(AdminClients, { path: '/admin/clients' })

    await wrapper.findAll('button').find((b) => b.text() === '禁用').trigger('click')
    await acceptConfirm()

    expect(calls.find((c) => c.method === 'PATCH').body).toEqual({ is_active: false })
    await vi.waitFor(() => expect(wrapper.get('[data-testid="clients-table"]').text()).toContain('已禁用'))
  })
})

describe('AdminMovies', () => {
  function routes(extra = {}) {
    return {
      ...ADMIN,
      'GET /api/movies': [200, { items: [film(1, { title: 'Toy Story (1995)' })], total: 1, page: 1, per_page: 20 }],
      'GET /api/movies/tags': [200, [{ tag: 'Comedy', count: 505 }]],
      ...extra,
    }
  }

  it('refuses to save a film without a title', async () => {
    const calls = mockFetch(routes())
    const { wrapper } = await mountWithApp(AdminMovies, { path: '/admin/movies' })

    await wrapper.get('[data-testid="movie-create"]').trigger('click')
    await flushPromises()
    document.querySelector('[data-testid="movie-save"]').click()
    await vi.waitFor(() => expect(document.body.textContent).toContain('请输入片名'))

    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0)
  })

  it('creates a film and shows the validation message the server sends back', async () => {
    const calls = mockFetch(
      routes({
        'POST /api/admin/movies': [422, { error: { code: 'validation_error', message: '请求参数校验失败', details: { imdb_url: ['Not a valid URL.'] } } }],
      }),
    )
    const { wrapper } = await mountWithApp(AdminMovies, { path: '/admin/movies' })

    await wrapper.get('[data-testid="movie-create"]').trigger('click')
    await flushPromises()
    const title = document.querySelector('[data-testid="movie-title-input"]')
    title.value = 'Heat (1995)'
    title.dispatchEvent(new Event('input'))
    document.querySelector('[data-testid="movie-save"]').click()
    await vi.waitFor(() => expect(document.body.textContent).toContain('请求参数校验失败(imdb_url:Not a valid URL.)'))

    expect(calls.find((c) => c.method === 'POST').body).toEqual({
      title: 'Heat (1995)',
      tags: [],
      director: null,
      actors: null,
      summary: null,
      imdb_url: null,
      poster_url: null,
      release_date: null,
    })
  })

  it('deletes a film only after confirmation', async () => {
    const calls = mockFetch(routes({ 'DELETE /api/admin/movies/1': [200, { deleted: 1 }] }))
    const { wrapper } = await mountWithApp(AdminMovies, { path: '/admin/movies' })

    await wrapper.findAll('button').find((b) => b.text() === '删除').trigger('click')
    await acceptConfirm()

    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.url)).toEqual(['/api/admin/movies/1'])
  })
})
