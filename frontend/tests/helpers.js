// Test helpers: a fake fetch that answers by "METHOD /path", and a mount with the
// app's real plugins (Pinia, the router on memory history, Element Plus).

import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

import ElementPlusParts from '@/plugins/element'
import { createAppRouter } from '@/router'

export function jsonResponse(status, body, headers = {}) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  })
}

/**
 * Replace global fetch. `routes` maps "GET /api/x" (query string ignored) to
 * [status, body] or to a function (url, init) returning a Response.
 */
export function mockFetch(routes) {
  const calls = []
  const fake = vi.fn(async (url, init = {}) => {
    const method = (init.method || 'GET').toUpperCase()
    const pathname = String(url).split('?')[0]
    calls.push({ method, url: String(url), init, body: init.body ? JSON.parse(init.body) : undefined })
    const answer = routes[`${method} ${pathname}`]
    if (answer === undefined) return jsonResponse(404, { error: { code: 'not_found', message: '请求的资源不存在' } })
    if (typeof answer === 'function') return answer(url, init)
    return jsonResponse(answer[0], answer[1])
  })
  vi.stubGlobal('fetch', fake)
  return calls
}

/** A film card as models.Movie.to_dict() returns it. */
export function film(id, overrides = {}) {
  return {
    id,
    title: `Film ${id} (1995)`,
    tags: ['Comedy', 'Drama'],
    director: 'Someone',
    actors: 'A, B',
    summary: 'A film.',
    score: 3.5,
    rating_count: 10,
    click_count: 2,
    release_date: '1995-01-01',
    year: 1995,
    imdb_id: null,
    imdb_url: null,
    poster_url: null,
    poster: `/posters/${id}`,
    ...overrides,
  }
}

/** Mount a component (or the route at `path`) with the app's plugins. */
export async function mountWithApp(component, { path = '/', props = {} } = {}) {
  const pinia = createPinia()
  setActivePinia(pinia)
  const router = createAppRouter(createMemoryHistory())
  router.push(path)
  await router.isReady()
  const wrapper = mount(component, {
    props,
    global: { plugins: [pinia, router, ElementPlusParts] },
    attachTo: document.body,
  })
  await flushPromises()
  return { wrapper, router, pinia }
}
