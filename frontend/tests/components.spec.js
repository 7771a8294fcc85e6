import { flushPromises } from '@vue/test-utils'
import { afterEach, describe, expect, it, vi } from 'vitest'

import MovieCard from '@/components/MovieCard.vue'
import MovieGrid from '@/components/MovieGrid.vue'
import HomeView from '@/views/HomeView.vue'
import LoginView from '@/views/LoginView.vue'
import MovieView from '@/views/MovieView.vue'
import RegisterView from '@/views/RegisterView.vue'

import { film, mockFetch, mountWithApp } from './helpers'

afterEach(() => {
  vi.unstubAllGlobals()
  document.body.innerHTML = ''
})

const VISITOR = { 'GET /api/auth/me': [401, { error: { code: 'login_required', message: '请先登录' } }] }
const CLIENT = { 'GET /api/auth/me': [200, { role: 'client', user: { id: 944, username: 'alice' } }] }

describe('MovieCard', () => {
  it('links to the film and shows title, year, score, tags and reason', async () => {
    mockFetch(VISITOR)
    const movie = film(1, { title: 'Toy Story (1995)', tags: ['Animation', "Children's", 'Comedy'], score: 3.88, reason: '热门电影,很多人看过' })

    const { wrapper } = await mountWithApp(MovieCard, { props: { movie } })

    expect(wrapper.attributes('href')).toBe('/movies/1')
    expect(wrapper.get('[data-testid="movie-title"]').text()).toBe('Toy Story (1995)')
    expect(wrapper.get('img').attributes('src')).toBe('/posters/1')
    expect(wrapper.text()).toContain('3.9')
    expect(wrapper.text()).toContain('动画')
    expect(wrapper.text()).toContain('儿童')
    expect(wrapper.text()).not.toContain('喜剧') // two tags at most
    expect(wrapper.get('[data-testid="movie-reason"]').text()).toBe('热门电影,很多人看过')
  })

  it('falls back to a placeholder with the title when the poster fails', async () => {
    mockFetch(VISITOR)
    const { wrapper } = await mountWithApp(MovieCard, { props: { movie: film(7, { title: 'Heat (1995)' }) } })

    await wrapper.get('img').trigger('error')

    expect(wrapper.find('img').exists()).toBe(false)
    expect(wrapper.get('[data-testid="poster-placeholder"]').text()).toBe('Heat (1995)')
  })
})

describe('MovieGrid', () => {
  it('shows the error with a retry button instead of a blank page', async () => {
    mockFetch(VISITOR)
    const { wrapper } = await mountWithApp(MovieGrid, { props: { movies: [], error: '服务暂时不可用,请稍后再试' } })

    expect(wrapper.get('[data-testid="load-error"]').text()).toContain('服务暂时不可用,请稍后再试')
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('shows skeletons while loading and a message when empty', async () => {
    mockFetch(VISITOR)
    const { wrapper } = await mountWithApp(MovieGrid, { props: { movies: [], loading: true, skeletonCount: 4 } })
    expect(wrapper.findAll('.el-skeleton')).toHaveLength(4)

    await wrapper.setProps({ loading: false, emptyText: '没有找到电影' })
    expect(wrapper.text()).toContain('没有找到电影')
  })
})

describe('HomeView', () => {
  it('shows a visitor the 12 films of the home answer', async () => {
    const recs = Array.from({ length: 12 }, (_, i) => film(i + 1, { reason: '热门电影,很多人看过' }))
    mockFetch({ ...VISITOR, 'GET /api/movies/home': [200, { recs }] })

    const { wrapper } = await mountWithApp(HomeView)

    expect(wrapper.findAll('[data-testid="movie-card"]')).toHaveLength(12)
    expect(wrapper.get('[data-testid="home-title"]').text()).toBe('热门与精选')
  })

  it('titles the list as personal for a client', async () => {
    mockFetch({ ...CLIENT, 'GET /api/movies/home': [200, { recs: [film(3, { reason: '因为你给《Toy Story (1995)》打了5星' })] }] })

    const { wrapper } = await mountWithApp(HomeView)

    expect(wrapper.get('[data-testid="home-title"]').text()).toBe('为你推荐 · alice')
    expect(wrapper.get('[data-testid="movie-reason"]').text()).toBe('因为你给《Toy Story (1995)》打了5星')
  })

  it('shows the server message when the home request fails', async () => {
    mockFetch({ ...VISITOR, 'GET /api/movies/home': [503, { error: { code: 'database_unavailable', message: '数据库暂时不可用,请稍后再试' } }] })

    const { wrapper } = await mountWithApp(HomeView)

    expect(wrapper.get('[data-testid="load-error"]').text()).toContain('数据库暂时不可用,请稍后再试')
    expect(wrapper.findAll('[data-testid="movie-card"]')).toHaveLength(0)
  })
})

describe('LoginView', () => {
  it('logs in as the given role and goes where it was asked to', async () => {
    const calls = mockFetch({
      ...VISITOR,
      'POST /api/auth/login': [200, { msg: '登录成功', role: 'admin', user: { id: 1, username: 'root' } }],
    })
    const { wrapper, router } = await mountWithApp(LoginView, { path: '/admin/login?redirect=/admin/clients', props: { role: 'admin' } })

    await wrapper.get('[data-testid="login-username"]').setValue('root')
    await wrapper.get('[data-testid="login-password"]').setValue('admin-pass-2026')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    await vi.waitFor(() => expect(router.currentRoute.value.fullPath).toBe('/admin/clients'))

    const login = calls.find((c) => c.method === 'POST')
    expect(login.body).toEqual({ username: 'root', password: 'admin-pass-2026', role: 'admin' })
  })

  it('shows the server message for wrong credentials', async () => {
    mockFetch({
      ...VISITOR,
      'POST /api/auth/login': [401, { error: { code: 'invalid_credentials', message: '用户名或密码错误' } }],
    })
    const { wrapper, router } = await mountWithApp(LoginView, { path: '/login' })

    await wrapper.get('[data-testid="login-username"]').setValue('alice')
    await wrapper.get('[data-testid="login-password"]').setValue('wrong-password')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(wrapper.find('[data-testid="login-error"]').exists()).toBe(true))

    expect(wrapper.get('[data-testid="login-error"]').text()).toContain('用户名或密码错误')
    expect(router.currentRoute.value.path).toBe('/login')
  })

  it('never redirects to another site after login', async () => {
    mockFetch({ ...VISITOR, 'POST /api/auth/login': [200, { msg: '登录成功', role: 'client', user: { id: 2, username: 'alice' } }] })
    const { wrapper, router } = await mountWithApp(LoginView, { path: '/login?redirect=//evil.example/x' })

    await wrapper.get('[data-testid="login-username"]').setValue('alice')
    await wrapper.get('[data-testid="login-password"]').setValue('secret-pass')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(router.currentRoute.value.path).toBe('/'))
  })
})

describe('RegisterView', () => {
  it('does not send a username the API would refuse', async () => {
    const calls = mockFetch(VISITOR)
    const { wrapper } = await mountWithApp(RegisterView, { path: '/register' })

    await wrapper.get('[data-testid="register-username"]').setValue('a b')
    await wrapper.get('[data-testid="register-password"]').setValue('short')
    await wrapper.get('[data-testid="register-confirm"]').setValue('other')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(wrapper.text()).toContain('两次输入的密码不一致'))

    expect(wrapper.text()).toContain('用户名为 3-32 位字母、数字、下划线或汉字')
    expect(wrapper.text()).toContain('密码长度为 8-128 位')
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0)
  })

  it('registers and goes to the login page with the username filled in', async () => {
    const calls = mockFetch({ ...VISITOR, 'POST /api/auth/register': [201, { id: 945, username: '影迷小王' }] })
    const { wrapper, router } = await mountWithApp(RegisterView, { path: '/register' })

    await wrapper.get('[data-testid="register-username"]').setValue('影迷小王')
    await wrapper.get('[data-testid="register-password"]').setValue('long-enough-1')
    await wrapper.get('[data-testid="register-confirm"]').setValue('long-enough-1')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(router.currentRoute.value.name).toBe('login'))

    expect(router.currentRoute.value.query.username).toBe('影迷小王')
    expect(calls.find((c) => c.method === 'POST').body).toEqual({ username: '影迷小王', password: 'long-enough-1' })
  })
})

describe('MovieView', () => {
  const detail = {
    ...film(1, { title: 'Toy Story (1995)', score: 3.9, rating_count: 452 }),
    my_rating: null,
    related: [film(2, { reason: '与《Toy Story (1995)》相似:动画' }), film(3)],
  }

  it('shows the film, its facts and the related films', async () => {
    mockFetch({ ...VISITOR, 'GET /api/movies/detail/1': [200, detail] })

    const { wrapper } = await mountWithApp(MovieView, { path: '/movies/1', props: { id: '1' } })

    expect(wrapper.get('[data-testid="movie-heading"]').text()).toBe('Toy Story (1995)')
    expect(wrapper.get('[data-testid="movie-score"]').text()).toBe('3.9')
    expect(wrapper.text()).toContain('452 人评分')
    expect(wrapper.get('[data-testid="related"]').findAll('[data-testid="movie-card"]')).toHaveLength(2)
    expect(wrapper.text()).toContain('登录后可评分')
  })

  it('saves the client rating and shows the new score', async () => {
    const calls = mockFetch({
      ...CLIENT,
      'GET /api/movies/detail/1': [200, detail],
      'PUT /api/movies/1/rating': [201, { movie_id: 1, rating: 5, created: true, score: 3.91, rating_count: 453 }],
    })
    const { wrapper } = await mountWithApp(MovieView, { path: '/movies/1', props: { id: '1' } })

    await wrapper.findAll('[data-testid="my-rating"] .el-rate__item')[4].trigger('click')
    await flushPromises()

    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ rating: 5 })
    expect(wrapper.get('[data-testid="movie-score"]').text()).toBe('3.9')
    expect(wrapper.text()).toContain('453 人评分')
    expect(wrapper.findAll('[data-testid="my-rating"] .el-rate__item .is-active')).toHaveLength(5)
  })

  it('says when the film does not exist', async () => {
    mockFetch({ ...VISITOR, 'GET /api/movies/detail/99999': [404, { error: { code: 'movie_not_found', message: '电影不存在' } }] })

    const { wrapper } = await mountWithApp(MovieView, { path: '/movies/99999', props: { id: '99999' } })

    expect(wrapper.text()).toContain('电影不存在')
    expect(wrapper.find('[data-testid="movie-heading"]').exists()).toBe(false)
  })
})

describe('ChatPanel', () => {
  it('streams the answer and links the film cards to their pages', async () => {
    const { default: ChatPanel } = await import('@/components/ChatPanel.vue')
    const text =
      'event: delta\ndata: {"content":"与《Heat》相似:"}\n\n' +
      'event: delta\ndata: {"content":"《Fargo》"}\n\n' +
      `event: done\ndata: ${JSON.stringify({ reply: '与《Heat》相似:《Fargo》', movies: [film(100, { title: 'Fargo (1996)' })], offline: true })}\n\n`
    const calls = mockFetch({
      ...VISITOR,
      'POST /api/ai/chat/stream': () => new Response(text, { headers: { 'Content-Type': 'text/event-stream' } }),
    })
    const { wrapper } = await mountWithApp(ChatPanel, { path: '/chat' })

    await wrapper.get('[data-testid="chat-input"]').setValue('类似 Heat 的电影')
    await wrapper.get('[data-testid="chat-input"]').trigger('keydown', { key: 'Enter' })
    await vi.waitFor(() => expect(wrapper.findAll('[data-testid="chat-movie"]')).toHaveLength(1))

    expect(calls.find((c) => c.method === 'POST').body).toEqual({ message: '类似 Heat 的电影', history: [] })
    expect(wrapper.get('[data-testid="chat-user"]').text()).toBe('类似 Heat 的电影')
    expect(wrapper.get('[data-testid="chat-assistant"] .bubble').text()).toBe('与《Heat》相似:《Fargo》')
    expect(wrapper.get('[data-testid="chat-movie"]').attributes('href')).toBe('/movies/100')
    expect(wrapper.get('[data-testid="chat-offline"]').text()).toContain('离线模式')
    expect(wrapper.get('[data-testid="chat-input"]').element.value).toBe('')
  })
})

describe('MeView', () => {
  it('lists my ratings and my history as the API pages them', async () => {
    const { default: MeView } = await import('@/views/MeView.vue')
    mockFetch({
      ...CLIENT,
      'GET /api/me/ratings': [200, { items: [{ movie: film(1, { title: 'Toy Story (1995)', score: 3.88 }), rating: 5, rated_at: '2026-12-03T10:00:00Z' }], total: 1, page: 1, per_page: 20 }],
      'GET /api/me/history': [200, { items: [{ movie: film(50, { title: 'Star Wars (1977)' }), viewed_at: '2026-12-03T10:05:00Z', views: 3 }], total: 1, page: 1, per_page: 20 }],
    })

    const { wrapper } = await mountWithApp(MeView, { path: '/me' })

    const ratings = wrapper.get('[data-testid="my-ratings"]')
    expect(ratings.text()).toContain('Toy Story (1995)')
    expect(ratings.text()).toContain('3.9')
    expect(ratings.findAll('.el-rate__item .is-active')).toHaveLength(5)
    expect(ratings.get('a').attributes('href')).toBe('/movies/1')
    const history = wrapper.get('[data-testid="my-history"]')
    expect(history.text()).toContain('Star Wars (1977)')
    expect(history.findAll('.el-table__row td').map((td) => td.text())).toContain('3')
  })

  it('shows the error when my ratings cannot be loaded', async () => {
    const { default: MeView } = await import('@/views/MeView.vue')
    mockFetch({
      ...CLIENT,
      'GET /api/me/ratings': [401, { error: { code: 'login_required', message: '请先登录' } }],
      'GET /api/me/history': [200, { items: [], total: 0 }],
    })

    const { wrapper } = await mountWithApp(MeView, { path: '/me' })

    expect(wrapper.text()).toContain('请先登录')
    expect(wrapper.find('[data-testid="my-ratings"]').exists()).toBe(false)
  })
})
