import { afterEach, describe, expect, it, vi } from 'vitest'

import { ApiRequestError, http, request } from '@/api/http'

import { jsonResponse, mockFetch } from './helpers'

afterEach(() => vi.unstubAllGlobals())

describe('request', () => {
  it('sends JSON with the session cookie and returns the parsed body', async () => {
    const calls = mockFetch({ 'PUT /api/movies/1/rating': [200, { rating: 4, score: 3.9 }] })

    const body = await http.put('/api/movies/1/rating', { rating: 4 })

    expect(body).toEqual({ rating: 4, score: 3.9 })
    expect(calls).toHaveLength(1)
    expect(calls[0].method).toBe('PUT')
    expect(calls[0].init.credentials).toBe('same-origin')
    expect(calls[0].init.headers['Content-Type']).toBe('application/json')
    expect(calls[0].body).toEqual({ rating: 4 })
  })

  it('builds the query string and leaves out empty parameters', async () => {
    const calls = mockFetch({ 'GET /api/movies': [200, { items: [], total: 0 }] })

    await http.get('/api/movies', { q: 'toy story', tag: '', page: 2, year_from: null })

    expect(calls[0].url).toBe('/api/movies?q=toy+story&page=2')
  })

  it('turns the JSON error body into an ApiRequestError with code and message', async () => {
    mockFetch({
      'POST /api/auth/register': [409, { error: { code: 'username_taken', message: '用户名已被占用' } }],
    })

    const error = await http.post('/api/auth/register', { username: 'alice' }).catch((e) => e)

    expect(error).toBeInstanceOf(ApiRequestError)
    expect(error.status).toBe(409)
    expect(error.code).toBe('username_taken')
    expect(error.message).toBe('用户名已被占用')
  })

  it('keeps field details of a validation error', async () => {
    const details = { title: ['Missing data for required field.'] }
    mockFetch({
      'POST /api/admin/movies': [
        422,
        { error: { code: 'validation_error', message: '请求参数校验失败', details } },
      ],
    })

    const error = await http.post('/api/admin/movies', {}).catch((e) => e)

    expect(error.status).toBe(422)
    expect(error.details).toEqual(details)
  })

  it('gives a Chinese message when the error body is not JSON', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => new Response('<html>Bad Gateway</html>', { status: 502 })),
    )

    const error = await request('GET', '/api/movies/home').catch((e) => e)

    expect(error.status).toBe(502)
    expect(error.code).toBe('http_502')
    expect(error.message).toBe('服务器暂时无法访问')
  })

  it('reports a network failure as status 0', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => {
        throw new TypeError('Failed to fetch')
      }),
    )

    const error = await http.get('/api/movies/home').catch((e) => e)

    expect(error.status).toBe(0)
    expect(error.code).toBe('network_error')
    expect(error.message).toBe('网络连接失败,请检查网络后重试')
  })

  it('returns null for 204 No Content', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(null, { status: 204 })))

    expect(await http.delete('/api/me/history')).toBeNull()
  })

  it('returns null for a successful answer that is not JSON', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => jsonResponse(200, 'x', { 'Content-Type': 'text/plain' })))

    expect(await http.get('/api/x')).toBeNull()
  })
})

describe('onUnauthorized', () => {
  it('is told when the server answers 401, and not otherwise', async () => {
    const { onUnauthorized } = await import('@/api/http')
    const seen = []
    onUnauthorized(() => seen.push('401'))
    mockFetch({
      'PUT /api/movies/1/rating': [401, { error: { code: 'login_required', message: '请先登录' } }],
      'GET /api/movies/detail/9': [404, { error: { code: 'movie_not_found', message: '电影不存在' } }],
    })

    const error = await http.put('/api/movies/1/rating', { rating: 3 }).catch((e) => e)
    await http.get('/api/movies/detail/9').catch(() => null)
    onUnauthorized(null)

    expect(error.message).toBe('请先登录')
    expect(seen).toEqual(['401'])
  })
})
