// The AI movie expert conversation: streamed replies with film cards.

import { defineStore } from 'pinia'

import { chatApi } from '@/api'
import { readEventStream } from '@/utils/sse'

const APOLOGY = '抱歉,我现在的思维有点混乱,请稍后再试。'
const MAX_HISTORY = 10

function deltaText(data) {
  if (typeof data === 'string') return data
  if (!data || typeof data !== 'object') return ''
  return data.delta ?? data.content ?? data.text ?? ''
}

export const useChatStore = defineStore('chat', {
  state: () => ({ messages: [], sending: false }),
  getters: {
    /** The earlier turns sent with a question (the API takes at most 10). */
    history: (state) =>
      state.messages
        .filter((m) => !m.error && m.content && !m.pending)
        .map((m) => ({ role: m.role, content: m.content }))
        .slice(-MAX_HISTORY),
  },
  actions: {
    reset() {
      this.messages = []
      this.sending = false
    },
    /** Ask a question; the reply streams into the last message as it arrives. */
    async ask(text) {
      const message = (text || '').trim()
      if (!message || this.sending) return
      const history = this.history
      this.messages.push({ role: 'user', content: message })
      this.messages.push({ role: 'assistant', content: '', movies: [], pending: true })
      const reply = this.messages[this.messages.length - 1]
      this.sending = true
      try {
        const response = await chatApi.stream(message, history)
        await readEventStream(response.body, ({ event, data }) => {
          this.applyEvent(reply, event, data)
        })
        if (!reply.content) reply.content = APOLOGY
      } catch (error) {
        reply.error = true
        reply.content = (error && error.message) || APOLOGY
      } finally {
        reply.pending = false
        this.sending = false
      }
    },
    applyEvent(reply, event, data) {
      if (event === 'error') {
        reply.error = true
        const err = data && data.error ? data.error : data
        reply.content = (data && data.reply) || (err && err.message) || APOLOGY
        if (data && Array.isArray(data.movies)) reply.movies = data.movies
        return
      }
      if (data && typeof data === 'object' && Array.isArray(data.movies)) {
        // The final event: the film cards, and the whole reply when it is given.
        reply.movies = data.movies
        reply.offline = Boolean(data.offline)
        if (typeof data.reply === 'string' && data.reply) reply.content = data.reply
        return
      }
      reply.content += deltaText(data)
    },
  },
})
