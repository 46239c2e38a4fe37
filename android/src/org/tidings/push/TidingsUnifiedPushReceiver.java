package org.tidings.push;

import android.content.Context;

import org.unifiedpush.android.connector.FailedReason;
import org.unifiedpush.android.connector.MessagingReceiver;
import org.unifiedpush.android.connector.data.PublicKeySet;
import org.unifiedpush.android.connector.data.PushEndpoint;
import org.unifiedpush.android.connector.data.PushMessage;

/** UnifiedPush (a distributor app such as ntfy, no Google services): the endpoint is a
 *  WebPush subscription the server pushes to (RFC 8291, VAPID); a message wakes the service. */
public class TidingsUnifiedPushReceiver extends MessagingReceiver {
    @Override
    public void onMessage(Context context, PushMessage message, String instance) {
        Wake.wake(context, "unifiedpush");
    }

    @Override
    public void onNewEndpoint(Context context, PushEndpoint endpoint, String instance) {
        PublicKeySet keys = endpoint.getPubKeySet();
        String p256dh = keys == null ? "" : keys.getPubKey();
        String auth = keys == null ? "" : keys.getAuth();
        PushRegistration.endpointReceived(endpoint.getUrl(), p256dh, auth);
        Wake.register(context, "webpush", endpoint.getUrl(), p256dh, auth);
    }

    @Override
    public void onRegistrationFailed(Context context, FailedReason reason, String instance) {
        android.util.Log.w("tidings", "UnifiedPush registration failed: " + reason);
    }

    @Override
    public void onUnregistered(Context context, String instance) {
        android.util.Log.i("tidings", "UnifiedPush unregistered");
    }
}
