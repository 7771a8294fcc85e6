// Who is logged in: a client, an admin, or nobody (a visitor).

import { defineStore } from 'pinia'

import { authApi } from '@/api'

/** Read {role, user} out of the login or /me answer, whatever its exact shape. */
export function normaliseIdentity(body) {
  if (!body || typeof body !== 'object') return { role: null, user: null }
  const user = body.user && typeof body.user === 'object' ? body.user : body
  const role = body.role || user.role || (user.username ? 'client' : null)
  return { role: user.username ? role : null, user: user.username ? user : null }
}

export const useAuthStore = defineStore('auth', {
  state: () => ({ user: null, role: null, loaded: false }),
  getters: {
    isLoggedIn: (state) => Boolean(state.user),
    isClient: (state) => Boolean(state.user) && state.role === 'client',
    isAdmin: (state) => Boolean(state.user) && state.role === 'admin',
    username: (state) => (state.user ? state.user.username : ''),
  },
  actions: {
    setIdentity(body) {
      const { role, user } = normaliseIdentity(body)
      this.user = user
      this.role = role
      this.loaded = true
    },
    clear() {
      this.user = null
      this.role = null
      this.loaded = true
    },
    /** Ask the server who we are; a 401 simply means "visitor". */
    async fetchMe() {
      try {
        this.setIdentity(await authApi.me())
      } catch (error) {
        if (error && (error.status === 401 || error.status === 403)) this.clear()
        else {
          this.loaded = true
          throw error
        }
      }
    },
    async ensureLoaded() {
      if (this.loaded) return
      try {
        await this.fetchMe()
      } catch {
        // The guard must not block navigation when the server is unreachable;
        // the page itself shows the error.
        this.loaded = true
      }
    },
    async login(username, password, role = 'client') {
      const body = await authApi.login(username, password, role)
      this.setIdentity({ role, ...body })
      return body
    },
    async register(username, password) {
      return authApi.register(username, password)
    },
    async logout() {
      try {
        await authApi.logout()
      } finally {
        this.clear()
      }
    },
  },
})
