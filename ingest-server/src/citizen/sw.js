// Service worker of the citizen app: shows fine notices pushed by the
// server (Web Push, RFC 8030/8291; the browser decrypts the payload) and
// opens the case when the notice is tapped. No caching of personal data.
self.addEventListener('push', event => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = { title: 'Thông báo vi phạm', body: event.data ? event.data.text() : '' }; }
  const title = data.title || 'Thông báo vi phạm giao thông';
  event.waitUntil(self.registration.showNotification(title, {
    body: data.body || '', icon: '/app/icon.svg', data: { url: data.url || '/app/' }, lang: 'vi'
  }));
});
self.addEventListener('notificationclick', event => {
  event.notification.close();
  event.waitUntil(clients.openWindow(event.notification.data.url));
});
