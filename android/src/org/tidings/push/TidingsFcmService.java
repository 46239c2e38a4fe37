package org.tidings.push;

import com.google.firebase.messaging.FirebaseMessagingService;
import com.google.firebase.messaging.RemoteMessage;

/** FCM: a data message from the Tidings server wakes the push service; a new token is
 *  registered with the server through it. */
public class TidingsFcmService extends FirebaseMessagingService {
    @Override
    public void onMessageReceived(RemoteMessage message) {
        Wake.wake(this, "fcm");
    }

    @Override
    public void onNewToken(String token) {
        PushRegistration.tokenRefreshed(token);
        Wake.register(this, "fcm", token, "", "");
    }
}
