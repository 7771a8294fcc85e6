// Every REST route the front end calls (see the API issue and api/*.py).

import { errorFromResponse, http } from './http'

export const authApi = {
  register: (username, password) => http.post('/api/auth/register', { username, password }),
  login: (username, password, role = 'client') =>
    http.post('/api/auth/login', { username, password, role }),
  logout: () => http.post('/api/auth/logout', {}),
  me: () => http.get('/api/auth/me'),
  changePassword: (oldPassword, newPassword) =>
    http.put('/api/auth/password', { old_password: oldPassword, new_password: newPassword }),
}

export const movieApi = {
  home: () => http.get('/api/movies/home'),
  detail: (id) => http.get(`/api/movies/detail/${id}`),
  search: (params) => http.get('/api/movies', params),
  tags: () => http.get('/api/movies/tags'),
  rate: (id, rating) => http.put(`/api/movies/${id}/rating`, { rating }),
  unrate: (id) => http.delete(`/api/movies/${id}/rating`),
}

export const meApi = {
  ratings: (params) => http.get('/api/me/ratings', params),
  history: (params) => http.get('/api/me/history', params),
  clearHistory: () => http.delete('/api/me/history'),
}

export const adminApi = {
  stats: () => http.get('/api/admin/stats'),
  charts: () => http.get('/api/admin/charts'),
  clients: (params) => http.get('/api/admin/clients', params),
  resetPassword: (id) => http.post(`/api/admin/clients/${id}/reset-password`, {}),
  setClientActive: (id, isActive) => http.patch(`/api/admin/clients/${id}`, { is_active: isActive }),
  deleteClient: (id) => http.delete(`/api/admin/clients/${id}`),
  movies: (params) => http.get('/api/movies', params),
  createMovie: (movie) => http.post('/api/admin/movies', movie),
  updateMovie: (id, movie) => http.patch(`/api/admin/movies/${id}`, movie),
  deleteMovie: (id) => http.delete(`/api/admin/movies/${id}`),
  model: () => http.get('/api/admin/model'),
  train: () => http.post('/api/admin/model/train', {}),
}

export const chatApi = {
  send: (message, history) => http.post('/api/ai/chat', { message, history }),
  /** Open the streamed chat; resolves to the fetch Response (text/event-stream). */
  async stream(message, history, signal) {
    const response = await fetch('/api/ai/chat/stream', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify({ message, history }),
      signal,
    })
    if (!response.ok) throw await errorFromResponse(response)
    return response
  },
}
