import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

import { createAppRouter, guard } from '@/router'
import { useAuthStore } from '@/stores/auth'

import { mockFetch } from './helpers'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

const ADMIN_PAGE = { fullPath: '/admin/clients', meta: { requiresAdmin: true } }
const MY_PAGE = { fullPath: '/me', meta: { requiresClient: true } }

describe('guard', () => {
  it('sends a visitor to the admin login, remembering the page', () => {
    const auth = { isAdmin: false, isClient: false }
    expect(guard(ADMIN_PAGE, auth)).toEqual({ name: 'admin-login', query: { redirect: '/admin/clients' } })
  })

  it('refuses the admin pages to a client', () => {
    expect(guard(ADMIN_PAGE, { isAdmin: false, isClient: true })).toEqual({ name: 'forbidden' })
  })

  it('lets an admin into the admin pages', () => {
    expect(guard(ADMIN_PAGE, { isAdmin: true, isClient: false })).toBe(true)
  })

  it('asks a visitor to log in for "my" pages, and lets clients in', () => {
    expect(guard(MY_PAGE, { isAdmin: false, isClient: false })).toEqual({
      name: 'login',
      query: { redirect: '/me' },
    })
    expect(guard(MY_PAGE, { isAdmin: false, isClient: true })).toBe(true)
  })

  it('keeps an admin out of client pages', () => {
    expect(guard(MY_PAGE, { isAdmin: true, isClient: false })).toEqual({ name: 'login', query: { redirect: '/me' } })
  })
})

describe('router', () => {
  it('shows the forbidden page when a logged-in client opens /admin', async () => {
    mockFetch({ 'GET /api/auth/me': [200, { role: 'client', user: { id: 2, username: 'alice' } }] })
    const router = createAppRouter(createMemoryHistory())

    await router.push('/admin')

    expect(router.currentRoute.value.name).toBe('forbidden')
    expect(useAuthStore().isClient).toBe(true)
  })

  it('sends a visitor from /admin to the admin login', async () => {
    mockFetch({ 'GET /api/auth/me': [401, { error: { code: 'login_required', message: '请先登录' } }] })
    const router = createAppRouter(createMemoryHistory())

    await router.push('/admin')

    expect(router.currentRoute.value.name).toBe('admin-login')
    expect(router.currentRoute.value.query.redirect).toBe('/admin')
  })

  it('resolves film pages by numeric id only', () => {
    const router = createAppRouter(createMemoryHistory())

    expect(router.resolve('/movies/42').name).toBe('movie')
    expect(router.resolve('/movies/abc').name).toBe('not-found')
  })
})
